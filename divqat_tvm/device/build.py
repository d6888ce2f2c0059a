"""Firmware image (ELF, BIN, HEX, map, footprint.json) from a compiled build directory and a board.

The compiled library (model.c, kernels.c, model.h, manifest.json: docs/contracts.md) is linked with the
hand-written runtime in firmware/ for one board of targets/. The board file gives the memory map (linker
script), the UART driver and base, the clock and the shared-RAM window; the core file gives the compiler
flags. Everything that changes the image (sources, flags, settings) goes into a stamp, so an unchanged
firmware is not rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from divqat_tvm.defenses.spec import HEADER_NAME as DEFENSE_HEADER
from divqat_tvm.defenses.spec import DefenseSpec, from_postprocessor
from divqat_tvm.device.toolchain import run, tool
from divqat_tvm.errors import CompileError, TargetError
from divqat_tvm.fileio import atomic_write_json, atomic_write_text
from divqat_tvm.targets import Board, Core, load_board, load_core

FW_VERSION = "0.1.0"
FIRMWARE_DIR = Path(__file__).resolve().parent.parent.parent / "firmware"
DEFAULT_STACK_BYTES = 16 * 1024
#: warnings are errors on every firmware build (runtime and the compiled model alike); -fstack-usage writes
#: a .su file per object next to it
WARNING_CFLAGS = ["-Wall", "-Wextra", "-Werror"]
COMMON_CFLAGS = [
    "-O2", "-g", "-std=gnu11", *WARNING_CFLAGS, "-ffunction-sections", "-fdata-sections", "-ffp-contract=off",
    "-fno-fast-math", "-fstack-usage",
]
#: runtime sources by role (the footprint report groups flash by these)
RUNTIME_SOURCES = ["startup.c", "faults.c", "timer.c", "stack.c", "semihost.c", "uart_common.c", "main.c",
                   "postprocess.c"]
PROTOCOL_SOURCES = ["protocol.c"]
BOARD_SOURCES = {"cmsdk": "board_cmsdk.c", "stm32-usart": "board_stm32.c", "stm32-lpuart": "board_stm32.c"}


@dataclass(frozen=True)
class FirmwareBuild:
    """Where a firmware build landed and what it was built with."""

    out_dir: Path
    board: Board
    core: Core
    defense: DefenseSpec
    profile: bool
    manifest: dict[str, Any]

    @property
    def elf(self) -> Path:
        return self.out_dir / "firmware.elf"

    @property
    def bin(self) -> Path:
        return self.out_dir / "firmware.bin"

    @property
    def hex(self) -> Path:
        return self.out_dir / "firmware.hex"

    @property
    def map(self) -> Path:
        return self.out_dir / "firmware.map"

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.out_dir / "firmware.json").read_text())


def read_manifest(build_dir: Path) -> dict[str, Any]:
    """The compiled artifact's manifest, checked for the files the firmware needs."""
    build_dir = Path(build_dir)
    path = build_dir / "manifest.json"
    if not path.is_file():
        raise CompileError(f"{build_dir} has no manifest.json, so it is not a compiled model.",
                           "Run `divqat-tvm compile` first, or pass the directory it wrote.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompileError(f"{path} is not valid JSON ({e}).", "Compile the model again.") from e
    for name in ("model.h", "model.c", "kernels.c"):
        if not (build_dir / name).is_file():
            raise CompileError(f"{build_dir} lacks {name}.", "Compile the model again with `divqat-tvm compile`.")
    for key in ("prefix", "input", "output"):
        if key not in manifest:
            raise CompileError(f"{path} lacks '{key}'.", "Compile the model again (the manifest format changed?).")
    return manifest


def variant_name(board: str, defense: DefenseSpec, profile: bool, test_fault: bool = False,
                 stack_bytes: int = DEFAULT_STACK_BYTES) -> str:
    """fw-<board>[-<defence tag>][-prof][-faulttest][-stackN]: one directory per distinct image."""
    parts = [f"fw-{board}"]
    if defense.tag:
        parts.append(defense.tag)
    if profile:
        parts.append("prof")
    if test_fault:
        parts.append("faulttest")
    if stack_bytes != DEFAULT_STACK_BYTES:
        parts.append(f"stack{stack_bytes}")
    return "-".join(parts)


def _c_string(s: str) -> str:
    """A C string literal holding s's UTF-8 bytes (anything but printable ASCII as octal escapes)."""
    out = []
    for b in s.encode():
        c = chr(b)
        out.append("\\" + c if c in '"\\' else c if 0x20 <= b < 0x7F and c != "?" else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def protocol_constant(name: str) -> int:
    """A `#define NAME 123u` of firmware/include/dq_protocol.h (the C header is the one place it is written)."""
    text = (FIRMWARE_DIR / "include" / "dq_protocol.h").read_text()
    m = re.search(rf"^#define {name} (\d+)u?\b", text, re.M)
    if m is None:
        raise CompileError(f"firmware/include/dq_protocol.h does not define {name}.", "Restore the header from git.")
    return int(m.group(1))


def info_strings(manifest: dict[str, Any], board: Board) -> list[str]:
    """The strings of the INFO answer, in wire order: model sha256, board, model name, firmware version."""
    sha = (manifest.get("source_model") or {}).get("sha256") or "unknown"
    return [sha, board.name, str(manifest.get("name", "model")), FW_VERSION]


def check_limits(manifest: dict[str, Any], board: Board) -> None:
    """Refuse, with one line naming the limit, a model the firmware's fixed-size answers cannot carry."""
    classes = math.prod(int(d) for d in manifest["output"]["shape"])
    limit = protocol_constant("DQ_MAX_CLASSES")
    if classes > limit:
        raise CompileError(f"the model has {classes} output values, more than the firmware's limit of {limit} "
                           "classes (the INFER answer's class count is a u16).",
                           "Build a model with fewer outputs.")
    strings = info_strings(manifest, board)
    need = protocol_constant("DQ_INFO_FIXED_BYTES") + sum(len(t.encode()) + 1 for t in strings)
    cap = protocol_constant("DQ_INFO_MAX_BYTES")
    if need > cap:
        raise CompileError(f"the INFO answer would need {need} bytes, more than the firmware's limit of {cap} "
                           f"(DQ_INFO_MAX_BYTES); its strings are {[len(t.encode()) for t in strings]} bytes long.",
                           "Give the model (manifest 'name') or the board a shorter name.")


def fw_config_header(manifest: dict[str, Any], board: Board, core: Core, defense: DefenseSpec, profile: bool,
                     test_fault: bool) -> str:
    """fw_config.h: the board, the model's prefix mapped to fixed names, the defence, the build switches."""
    prefix = manifest["prefix"]
    up = prefix.upper()
    shape = [int(d) for d in manifest["input"]["shape"]]
    if len(shape) > 4:
        raise CompileError(f"input shape {shape} has more than 4 dimensions.", "The firmware supports up to 4.")
    dims = shape + [0] * (4 - len(shape))
    shm = (board.qemu or {}).get("shared_ram") or {}
    sha, _, model_name, _ = info_strings(manifest, board)
    uart = board.uart
    lines = [
        "/* Generated by divqat_tvm/device/build.py: do not edit. */",
        "#ifndef FW_CONFIG_H", "#define FW_CONFIG_H", "", '#include "model.h"', "",
        f'#define DQ_FW_VERSION "{FW_VERSION}"',
        f"#define DQ_FW_VERSION_MAJOR {FW_VERSION.split('.')[0]}",
        f"#define DQ_FW_VERSION_MINOR {FW_VERSION.split('.')[1]}",
        f"#define DQ_BOARD_NAME {_c_string(board.name)}",
        f"#define DQ_QEMU {1 if board.is_qemu else 0}",
        f"#define DQ_CLOCK_HZ {board.clock_hz}u",
        f"#define DQ_UART_BASE {int(str(uart['base']), 0):#010x}u",
        f"#define DQ_UART_BAUD {int(uart.get('baud', 115200))}u",
        f"#define DQ_USE_DWT {1 if core.cycle_counter == 'dwt' else 0}",
        f"#define DQ_SHM_BASE {int(str(shm.get('origin', 0)), 0):#010x}u",
        f"#define DQ_SHM_SIZE {int(shm.get('length', 0))}u",
        f"#define DQ_PROFILE {1 if profile else 0}",
        f"#define DQ_TEST_FAULT {1 if test_fault else 0}",
        f"#define DQ_MODEL_NAME {_c_string(model_name)}",
        f"#define DQ_MODEL_SHA256 {_c_string(sha)}",
        f"#define DQ_INPUT_NDIM {len(shape)}",
        f"#define DQ_INPUT_DIMS {{{', '.join(str(d) for d in dims)}}}",
        f"#define DQ_MODEL_RUN {prefix}_run",
    ]
    for name in ("INPUT_SIZE", "OUTPUT_SIZE", "INPUT_SCALE", "INPUT_ZERO_POINT", "OUTPUT_SCALE",
                 "OUTPUT_ZERO_POINT", "ARENA_BYTES", "NUM_OPS"):
        lines.append(f"#define DQ_{name} {up}_{name}")
    soc = board.raw.get("soc")
    if soc:
        lines.append(f"#define DQ_SOC_{soc.upper()} 1")
    lines += ["", "#endif", ""]
    return "\n".join(lines)


def linker_script(board: Board, stack_bytes: int) -> str:
    text = (FIRMWARE_DIR / "ld" / "cortex-m.ld.in").read_text()
    subs = {
        "@BOARD@": board.name, "@FLASH_ORIGIN@": f"{board.flash.origin:#010x}",
        "@FLASH_LENGTH@": str(board.flash.length), "@RAM_ORIGIN@": f"{board.ram.origin:#010x}",
        "@RAM_LENGTH@": str(board.ram.length), "@STACK_BYTES@": str(stack_bytes),
    }
    for k, v in subs.items():
        text = text.replace(k, v)
    return text


def sources(build_dir: Path, board: Board) -> dict[str, Path]:
    """Object name -> C source, for this board."""
    kind = board.uart.get("kind")
    if kind not in BOARD_SOURCES:
        raise TargetError(f"board '{board.name}' has UART kind '{kind}', which the firmware has no driver for.",
                          f"Use one of {', '.join(BOARD_SOURCES)}, or add a driver to firmware/src/.")
    src = FIRMWARE_DIR / "src"
    names = RUNTIME_SOURCES + PROTOCOL_SOURCES + [BOARD_SOURCES[kind], "profile.c"]
    out = {Path(n).stem: src / n for n in names}
    out["model"] = build_dir / "model.c"
    out["kernels"] = build_dir / "kernels.c"
    for extra in sorted(build_dir.glob("*.c")):  # any further C the compiler wrote (e.g. separate weights)
        if extra.stem not in ("model", "kernels"):
            out[f"model_{extra.stem}"] = extra
    return out


def _stamp(parts: list[str], files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    for f in sorted(files):
        h.update(str(f).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def build_firmware(build_dir: str | Path, board: str, defense: str | DefenseSpec | None = None,
                   profile: bool = False, test_fault: bool = False, stack_bytes: int = DEFAULT_STACK_BYTES,
                   force: bool = False) -> FirmwareBuild:
    """Build (or reuse) build/<name>/fw-<board>[-variant]/firmware.{elf,bin,hex,map} and footprint.json.

    Args:
        build_dir: a compiled model directory (manifest.json, model.h, model.c, kernels.c).
        board: a board name from targets/boards.
        defense: 'rs:beta=..,gamma=..', 'dcp:beta=..,gamma=..,nu=..' or None.
        profile: record per-operator timer ticks (STATS command).
        test_fault: tests only: a command that faults or hangs on purpose.
        stack_bytes: size of the painted stack region.
        force: rebuild even if the stamp matches.
    """
    build_dir = Path(build_dir).resolve()
    manifest = read_manifest(build_dir)
    b = load_board(board)
    core = load_core(b.core)
    spec = from_postprocessor(defense)
    check_limits(manifest, b)
    if stack_bytes < 256 or stack_bytes % 8:
        raise CompileError(f"a stack region of {stack_bytes} bytes is not usable.", "Use a multiple of 8 bytes, at least 256.")
    out = build_dir / variant_name(b.name, spec, profile, test_fault, stack_bytes)
    fb = FirmwareBuild(out, b, core, spec, profile, manifest)
    gcc = tool("arm-none-eabi-gcc")

    config_h = fw_config_header(manifest, b, core, spec, profile, test_fault)
    defense_h = spec.c_header()
    ld = linker_script(b, stack_bytes)
    srcs = sources(build_dir, b)
    cflags = list(core.cflags) + COMMON_CFLAGS + [
        f"-I{FIRMWARE_DIR / 'include'}", f"-I{out}", f"-I{build_dir}",
        f"-DDQ_OUTPUT_PROBABILITIES={1 if manifest.get('output', {}).get('kind') == 'probabilities' else 0}",
    ]
    deps = list(srcs.values()) + sorted((FIRMWARE_DIR / "include").glob("*.h")) + sorted(build_dir.glob("*.h"))
    stamp = _stamp([config_h, defense_h, ld, " ".join(cflags), FW_VERSION], deps)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out / ".lock"):  # parallel workers building the same image wait for each other
        if not force and _up_to_date(fb, stamp):
            return fb
        _compile_and_link(fb, gcc, cflags, srcs, {"fw_config.h": config_h, DEFENSE_HEADER: defense_h, "link.ld": ld},
                          profile, stamp, test_fault, stack_bytes, spec, manifest)
    return fb


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _up_to_date(fb: FirmwareBuild, stamp: str) -> bool:
    info = fb.out_dir / "firmware.json"
    return fb.elf.is_file() and info.is_file() and json.loads(info.read_text()).get("stamp") == stamp


def _compile_and_link(fb: FirmwareBuild, gcc: str, cflags: list[str], srcs: dict[str, Path], generated: dict[str, str],
                      profile: bool, stamp: str, test_fault: bool, stack_bytes: int, spec: DefenseSpec,
                      manifest: dict[str, Any]) -> None:
    """Generated files (fw_config.h, dq_defense_config.h, link.ld), objects (with their .su stack-usage files),
    ELF, BIN, HEX, footprint.json, then firmware.json (written last: it marks a complete build)."""
    out, b, core = fb.out_dir, fb.board, fb.core
    for name, text in generated.items():
        atomic_write_text(out / name, text)
    objs = []
    warnings: list[str] = []
    for stem, src in srcs.items():
        obj = out / f"{stem}.o"
        extra = ["-include", "dq_profile.h"] if (profile and stem.startswith("model")) else []
        run([gcc, *cflags, *extra, "-c", str(src), "-o", str(obj)], cwd=out, what=f"compiling {src.name} for {b.name}",
            warnings=warnings)
        objs.append(obj.name)
    elf_tmp = out / "firmware.elf.tmp"
    run([gcc, *core.cflags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-T", "link.ld",
         "-Wl,--gc-sections", "-Wl,-Map=firmware.map", "-Wl,--no-warn-rwx-segments", "-Wl,--fatal-warnings", "-o", elf_tmp.name, *objs,
         "-lm"], cwd=out, what=f"linking the firmware for {b.name}", warnings=warnings)
    elf_tmp.replace(fb.elf)
    objcopy = tool("arm-none-eabi-objcopy")
    for fmt, path in (("binary", fb.bin), ("ihex", fb.hex)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        run([objcopy, "-O", fmt, str(fb.elf), str(tmp)], what=f"objcopy -O {fmt}")
        tmp.replace(path)

    from divqat_tvm.report.footprint import static_footprint  # the report reads what the build wrote

    atomic_write_json(out / "footprint.json", static_footprint(fb))
    atomic_write_json(out / "firmware.json", {
        "stamp": stamp, "board": b.name, "core": core.name, "defense": spec.spec(), "profile": profile,
        "test_fault": test_fault, "stack_bytes": stack_bytes, "warnings": warnings, "fw_version": FW_VERSION, "cflags": cflags,
        "model": manifest.get("name"), "model_sha256": (manifest.get("source_model") or {}).get("sha256"),
    })
