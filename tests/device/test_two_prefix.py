"""Issue #15 (5): two models compiled with different `--prefix` linked into one firmware image, both run under
QEMU. The image (tests/device/two_prefix_main.c) runs each model on its inputs and compares the outputs with the
host build's in the guest; QEMU's exit status is 0, or 1 + the first case that differs (a planted wrong byte
checks that a difference is seen)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.api import compile_model
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.device.build import COMMON_CFLAGS, linker_script
from divqat_tvm.targets import load_board, load_core
from divqat_tvm.toolchain import tool

sys.path.insert(0, str(Path(__file__).parents[1] / "compiler"))
from coverage_models import coverage_model  # noqa: E402

MAIN = Path(__file__).with_name("two_prefix_main.c")
BOARD = "mps2-an386"
MODELS = {"se_net": "se", "cat_net": "concat"}
CASES = 3


def _c_array(name: str, a: np.ndarray) -> str:
    return f"static const int8_t {name}[{a.size}] = {{{', '.join(str(int(v)) for v in a.reshape(-1))}}};"


def data_header(dirs: dict[str, Path], cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    lines = ["#include <stdint.h>"]
    lines += [f'#include "{d.name}/model.h"' for d in dirs.values()]
    entries = []
    for prefix, (xs, ys) in cases.items():
        for i, (x, y) in enumerate(zip(xs, ys)):
            lines += [_c_array(f"{prefix}_in_{i}", x), _c_array(f"{prefix}_want_{i}", y)]
            entries.append(f"X({prefix}, {prefix.upper()}, {i})")
    lines.append("#define DQ_CASES(X) " + " ".join(entries))
    return "\n".join(lines) + "\n"


def build_image(tmp: Path, dirs: dict[str, Path], cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    board = load_board(BOARD)
    gcc = tool("arm-none-eabi-gcc")
    cflags = [*load_core(board.core).cflags, *COMMON_CFLAGS, "-Wall", "-Werror"]
    img = tmp / "image"
    img.mkdir(exist_ok=True)
    (img / "two_prefix_data.h").write_text(data_header(dirs, cases))
    (img / "link.ld").write_text(linker_script(board, 8192))
    objs = []
    sources = [(MAIN, [f"-I{img}", f"-I{tmp}"])]
    sources += [(d / f, [f"-I{d}"]) for d in dirs.values() for f in ("model.c", "kernels.c")]
    for k, (src, inc) in enumerate(sources):
        obj = img / f"{k}_{src.stem}.o"
        subprocess.run([gcc, *cflags, *inc, "-c", str(src), "-o", str(obj)], check=True, capture_output=True)
        objs.append(str(obj))
    elf = img / "two.elf"
    link = [*load_core(board.core).cflags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs"]
    link += ["-T", str(img / "link.ld"), "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments", "-o", str(elf)]
    subprocess.run([gcc, *link, *objs, "-lm"], check=True, capture_output=True)
    return elf


def run_qemu(elf: Path) -> int:
    machine = load_board(BOARD).qemu["machine"]
    cmd = ["qemu-system-arm", "-machine", machine, "-display", "none", "-monitor", "none", "-nodefaults"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    return subprocess.run(cmd, capture_output=True, timeout=120).returncode


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
def test_two_prefixed_models_in_one_image_under_qemu(tmp_path):
    dirs, cases = {}, {}
    rng = np.random.default_rng(15)
    for prefix, net in MODELS.items():
        p = coverage_model(net, tmp_path / f"{net}.onnx")
        out = tmp_path / prefix
        compile_model(p, BOARD, out, prefix=prefix)  # compile, fit check and link check with the prefix
        host = HostModel(out)
        xq = host.quantize_input(rng.standard_normal((CASES, 3, 12, 12)).astype(np.float32))
        dirs[prefix], cases[prefix] = out, (xq, host.run(xq))
        header = (out / "model.h").read_text()
        assert f"int {prefix}_run(" in header and f"{prefix.upper()}_INPUT_SIZE" in header
    assert run_qemu(build_image(tmp_path, dirs, cases)) == 0
    xs, ys = cases["cat_net"]
    wrong = ys.copy()
    wrong[1, 0] ^= 1  # the second cat_net case: the fifth case in DQ_CASES
    cases["cat_net"] = (xs, wrong)
    assert run_qemu(build_image(tmp_path, dirs, cases)) == 1 + CASES + 2
