"""The generated library builds with arm-none-eabi-gcc for all six cores: no undefined symbols (the link
check links it), no heap (no malloc/_sbrk in the link map)."""

from __future__ import annotations

import subprocess

import pytest

from divqat_tvm.compiler import library
from divqat_tvm.targets import core_names, load_core

pytestmark = [pytest.mark.emulator, pytest.mark.needs_tools("arm-none-eabi-gcc")]


@pytest.mark.parametrize("core", core_names())
@pytest.mark.parametrize("scheme", ["fixed", "float"])
def test_library_builds_and_links_for_every_core(compiler_models, core, scheme) -> None:
    build = compiler_models["qs_avgpool"].builds[scheme]
    fp = library.build_library(build, load_core(core))
    work = build / f"arm-{core}"
    assert (work / "check.elf").is_file()
    assert not list(work.glob("*.warnings.txt")), "arm-none-eabi-gcc -Wall warned about the generated C"
    assert library.heap_symbols((work / "check.map").read_text()) == []
    assert fp.weight_bytes > 0 and fp.code_bytes > 0 and fp.flash_bytes == fp.weight_bytes + fp.code_bytes
    assert fp.ram_bytes >= fp.arena_bytes > 0
    nm = subprocess.run(["arm-none-eabi-nm", "-u", str(work / "check.elf")], capture_output=True, text=True)
    assert nm.stdout.strip() == ""


def test_heap_use_is_detected_in_the_map(tmp_path) -> None:
    """The no-heap check is not vacuous: a library that calls malloc is caught."""
    src = tmp_path / "m.c"
    src.write_text(
        "#include <stdlib.h>\nvoid e(void) { volatile char *p = malloc(8); p[0] = 1; free((void *)p); for (;;) { } }\n"
        "void *_sbrk(int n) { (void)n; return 0; }\n"
    )
    map_file = tmp_path / "m.map"
    subprocess.run(
        [
            "arm-none-eabi-gcc",
            *load_core("cortex-m4").cflags,
            "-nostartfiles",
            "-Wl,--gc-sections",
            f"-Wl,-Map={map_file}",
            "-Wl,-e,e",
            str(src),
            "-o",
            str(tmp_path / "m.elf"),
        ],
        check=True,
        capture_output=True,
    )
    assert "malloc" in library.heap_symbols(map_file.read_text())
