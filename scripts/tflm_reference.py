#!/usr/bin/env python
"""TFLite Micro reference figures for a .tflite model: bare-metal firmware under QEMU, instructions per inference.

Builds TensorFlow Lite Micro (tflite-micro 90b983c2) with CMSIS-NN (4ab83cc3, the commit TFLM pins) or with TFLM's
reference kernels, using TFLM's own Makefile exactly as ../shared/models/README.md describes
(`TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn BUILD_TYPE=release`: kernels -O2, core -Os; soft-float ABI
on Cortex-M4/M7, hard-float on M55), links it with a small harness (firmware/tflm/: the model in flash, a static
arena, the LCG input of the README rewritten before every run), runs it under QEMU with `-icount shift=0` and
counts instructions per inference (SysTick ticks x 1e9/clock: x40 on mps2 at 25 MHz, x31.25 on mps3-an547 at
32 MHz) and per operator (a MicroProfiler reading SysTick around each operator; its own overhead is outside
the operators but inside the profiled total). Writes JSON.

    cortex-m7 -> mps2-an500, cortex-m4 -> mps2-an386, cortex-m55 -> mps3-an547

Sources are not vendored: --src DIR must hold checked-out trees at the pinned commits (`--print-pins` lists
them): tflite-micro, CMSIS-NN, CMSIS_6, Cortex_DFP, flatbuffers, gemmlowp, ruy, kissfft. Either clone them
there yourself (`git clone https://github.com/OWNER/NAME DIR/NAME && git -C DIR/NAME checkout COMMIT`), or let
`--from-mirror ROOT` extract them from local git clones (ROOT/OWNER+NAME/repo, ROOT/NAME or ROOT/NAME.git).
TFLM's Makefile never downloads anything here: the build works on a copy in the cache with its downloads/
folder filled from --src. Needs arm-none-eabi-gcc (with newlib-nano), make and qemu-system-arm.

    python scripts/tflm_reference.py ../shared/models/kws_ref_model.tflite --core cortex-m7 --json build/tflm/kws-m7.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "firmware" / "tflm"
BOARDS_DIR = ROOT / "targets" / "boards"
PROG = "tflm_reference"

#: name -> (GitHub owner/name, commit or tag). tflite-micro 90b983c2 pins the others (its ext_libs/*_download.sh,
#: third_party_downloads.inc, flatbuffers_download.sh).
PINS: dict[str, tuple[str, str]] = {
    "tflite-micro": ("tensorflow/tflite-micro", "90b983c2b3f1480642e040bbd2ddb37b998f3424"),
    "CMSIS-NN": ("ARM-software/CMSIS-NN", "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae"),
    "CMSIS_6": ("ARM-software/CMSIS_6", "5782d6f8057906d360f4b95ec08a2354afe5c9b9"),
    "Cortex_DFP": ("ARM-software/Cortex_DFP", "c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf"),
    "flatbuffers": ("google/flatbuffers", "v25.9.23"),
    "gemmlowp": ("google/gemmlowp", "719139ce755a0f31cbf1c37f7f98adcc7fc9f425"),
    "ruy": ("google/ruy", "d37128311b445e758136b8602d1bbd2a755e115d"),
    "kissfft": ("mborgerding/kissfft", "v130"),
}
#: the commits of the tags above (a clone checked out at the tag reports the commit)
TAG_COMMITS = {
    "v25.9.23": "187240970746d00bbd26b0f5873ed54d2477f9f3",
    "v130": "918336beac80868ad3011cb283063bb224e3e5da",
}
PIN_FILE = ".divqat-pin"  # written by --from-mirror: the commit a tree was extracted at

#: core -> QEMU board (targets/boards/<board>.json gives memory, UART and clock)
CORE_BOARD = {"cortex-m7": "mps2-an500", "cortex-m4": "mps2-an386", "cortex-m55": "mps3-an547"}
KERNELS = ("cmsis_nn", "reference")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "divqat-tvm" / "tflm"
DEFAULT_SRC = Path(os.environ["DIVQAT_TFLM_SRC"]) if os.environ.get("DIVQAT_TFLM_SRC") else DEFAULT_CACHE / "src"
STACK_BYTES = 16 * 1024

#: BUILTIN_OPERATOR name -> MicroMutableOpResolver method where the CamelCase rule does not give it
RESOLVER_METHOD = {
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "MAX_POOL_2D": "AddMaxPool2D",
    "L2_POOL_2D": "AddL2Pool2D",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "BATCH_MATMUL": "AddBatchMatMul",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "RELU6": "AddRelu6",
    "PRELU": "AddPrelu",
    "SVDF": "AddSvdf",
    "ADD_N": "AddAddN",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "SELECT_V2": "AddSelectV2",
    "PADV2": "AddPadV2",
    "REVERSE_V2": "AddReverseV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


class UsageError(Exception):
    """Bad arguments or missing prerequisites: one line, exit code 2."""


class RunError(Exception):
    """A build or run that failed: one line (naming a log), exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{message} (see --help)")


def resolver_method(op: str) -> str:
    """The MicroMutableOpResolver method that registers a TFLite builtin operator ("CONV_2D" -> "AddConv2D")."""
    if op in RESOLVER_METHOD:
        return RESOLVER_METHOD[op]
    return "Add" + "".join(w.capitalize() for w in op.split("_"))


def instructions_per_tick(clock_hz: float) -> float:
    """Under QEMU -icount shift=0 one instruction is 1 ns of virtual time; SysTick counts at the core clock."""
    return 1e9 / clock_hz


def parse_firmware_output(text: str) -> dict[str, Any]:
    """The harness's UART lines (ARENA, TOTAL, OUTPUT, OP, PROFILED_TOTAL, DONE, ERROR) as a dict."""
    res: dict[str, Any] = {
        "totals": [],
        "ops": [],
        "output": None,
        "arena": None,
        "profiled_total": None,
        "done": False,
        "error": None,
    }
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "ARENA":
            res["arena"] = int(f[1])
        elif f[0] == "TOTAL":
            res["totals"].append(int(f[2]))
        elif f[0] == "OUTPUT":
            res["output"] = [int(v) for v in f[1:]]
        elif f[0] == "OP" and len(f) == 4:
            res["ops"].append((int(f[1]), f[2], int(f[3])))
        elif f[0] == "PROFILED_TOTAL":
            res["profiled_total"] = int(f[1])
        elif f[0] == "DONE":
            res["done"] = True
        elif f[0] in ("ERROR", "FAULT"):
            res["error"] = line.strip()
    return res


# --------------------------------------------------------------------------------------------------- sources


def pin_of(tree: Path) -> str | None:
    """The commit a source tree is at: its .divqat-pin file, else `git rev-parse HEAD`, else None."""
    pf = tree / PIN_FILE
    if pf.is_file():
        return pf.read_text().strip()
    if (tree / ".git").exists():
        r = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return r.stdout.strip()
    return None


def at_pin(name: str, have: str | None) -> bool | None:
    """Whether a tree's commit (or tag) is its pin; None when unknown (no pin file, not a git checkout)."""
    if have is None:
        return None
    want = PINS[name][1]
    return have in (want, TAG_COMMITS.get(want)) or (len(have) >= 7 and want.startswith(have))


def missing_sources(src: Path) -> list[str]:
    """Names of PINS with no tree under src (a tree counts when its directory is non-empty)."""
    return [n for n in PINS if not (src / n).is_dir() or not any((src / n).iterdir())]


def check_sources(src: Path) -> dict[str, dict[str, Any]]:
    """Each tree's pin and whether it matches; UsageError (one line, how to get them) when any is missing."""
    miss = missing_sources(src) if src.is_dir() else list(PINS)
    if miss:
        raise UsageError(
            f"TFLM sources not found in {src} (missing: {', '.join(miss)}); check out the pinned trees "
            f"there (--print-pins lists repositories and commits) or extract them from local git clones "
            f"with --from-mirror ROOT"
        )
    out = {}
    for name, (repo, want) in PINS.items():
        have = pin_of(src / name)
        out[name] = {"repo": repo, "pinned": want, "found": have, "matches": at_pin(name, have)}
    return out


def _git_dir(root: Path, repo: str) -> Path | None:
    owner, name = repo.split("/")
    for cand in (
        root / f"{owner}+{name}" / "repo",
        root / f"{owner}+{name}",
        root / name / ".git",
        root / name,
        root / f"{name}.git",
    ):
        if cand.is_dir() and (cand / "objects").is_dir() and (cand / "HEAD").is_file():
            return cand
    return None


def extract_from_mirror(root: Path, src: Path) -> None:
    """Extract each pinned tree from a local git clone under root into src/NAME (git archive; skips trees present)."""
    for name, (repo, ref) in PINS.items():
        dest = src / name
        if (dest / PIN_FILE).is_file():
            continue
        gd = _git_dir(root, repo)
        if gd is None:
            raise UsageError(
                f"no git clone of {repo} under {root} (looked for {repo.replace('/', '+')}/repo, "
                f"{repo.split('/')[1]}, {repo.split('/')[1]}.git)"
            )
        r = subprocess.run(
            ["git", "--git-dir", str(gd), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise UsageError(f"{gd} has no commit {ref} of {repo}: update that clone")
        commit = r.stdout.strip()
        tmp = src / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arch = subprocess.Popen(
            ["git", "--git-dir", str(gd), "archive", "--format=tar", commit], stdout=subprocess.PIPE
        )
        tar = subprocess.run(
            ["tar", "-x", "-C", str(tmp)], stdin=arch.stdout, capture_output=True, text=True, check=False
        )
        arch.wait()
        if arch.returncode or tar.returncode:
            raise RunError(f"extracting {repo}@{commit[:12]} from {gd} failed: {tar.stderr.strip()[:200]}")
        (tmp / PIN_FILE).write_text(ref if ref.startswith("v") else commit)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)


def _apply_patch(tree: Path, patch: Path, log: Path) -> None:
    with log.open("a") as lf:
        r = subprocess.run(
            ["git", "apply", "--ignore-space-change", "--ignore-whitespace", str(patch)],
            cwd=tree,
            stdout=lf,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if r.returncode:
        raise RunError(f"applying {patch.name} to {tree} failed (log: {log})")


def prepare_workspace(src: Path, cache: Path) -> Path:
    """A copy of tflite-micro in the cache with its downloads/ folder filled from src (TFLM's patches applied)."""
    material: list[Any] = [str(src.resolve()), sorted(PINS.items())]
    moved = {n: pin_of(src / n) for n in PINS if not at_pin(n, pin_of(src / n))}
    if moved:  # trees not at their pins (or of unknown commit) get their own workspace, per commit found
        material.append(sorted(moved.items(), key=lambda kv: kv[0]))
    key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:12]
    ws = cache / f"ws-{key}"
    tflm = ws / "tflite-micro"
    if (ws / ".ready").is_file():
        return tflm
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    log = ws / "prepare.log"
    ign = shutil.ignore_patterns(".git")
    shutil.copytree(src / "tflite-micro", tflm, ignore=ign, symlinks=True)
    dl = tflm / "tensorflow" / "lite" / "micro" / "tools" / "make" / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "flatbuffers", dl / "flatbuffers", ignore=ign, symlinks=True)
    _apply_patch(dl / "flatbuffers", tflm / "tensorflow/lite/micro/tools/make/flatbuffers.patch", log)
    shutil.copytree(src / "kissfft", dl / "kissfft", ignore=ign, symlinks=True)
    _apply_patch(dl / "kissfft", tflm / "third_party/kissfft/kissfft.patch", log)
    for name, folder in (("gemmlowp", "gemmlowp"), ("ruy", "ruy"), ("CMSIS-NN", "cmsis_nn")):
        (dl / folder).symlink_to((src / name).resolve(), target_is_directory=True)
    shutil.copytree(src / "CMSIS_6", dl / "cmsis", ignore=ign, symlinks=True)
    shutil.copytree(src / "Cortex_DFP", dl / "cmsis" / "Cortex_DFP", ignore=ign, symlinks=True)
    (dl / "pigweed").mkdir()  # only TFLM's own tests use it; its presence stops the Makefile's git clone
    (ws / ".ready").write_text(json.dumps({n: pin_of(src / n) for n in PINS}))
    return tflm


# --------------------------------------------------------------------------------------------------- build


def make_args(core: str, kernels: str, gcc_root: str, core_opt: str | None = None) -> list[str]:
    """TFLM Makefile variables; core_opt overrides TFLM's core optimisation level (-Os) in a gen tree of its own."""
    a = [
        "TARGET=cortex_m_generic",
        f"TARGET_ARCH={core}",
        "BUILD_TYPE=release",
        "TOOLCHAIN=gcc",
        f"TARGET_TOOLCHAIN_ROOT={gcc_root}",
    ]
    if kernels == "cmsis_nn":
        a.append("OPTIMIZED_KERNEL_DIR=cmsis_nn")
    if core_opt:
        a += [f"CORE_OPTIMIZATION_LEVEL={core_opt}", f"BASE_GENDIR=gen-core{core_opt.lstrip('-')}"]
    return a


def make_env(cache: Path) -> dict[str, str]:
    """PATH with a `python3` that is this interpreter: TFLM's Makefile runs python3 (numpy, Pillow) while parsing."""
    shim = cache / "pyshim"
    shim.mkdir(parents=True, exist_ok=True)
    exe = shim / "python3"
    body = f'#!/bin/sh\nexec "{sys.executable}" "$@"\n'
    if not exe.is_file() or exe.read_text() != body:
        exe.write_text(body)
        exe.chmod(0o755)
    return {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}


def make_vars(tflm: Path, args: list[str], names: list[str], env: dict[str, str]) -> dict[str, str]:
    r = subprocess.run(
        ["make", "-s", "-f", "tensorflow/lite/micro/tools/make/Makefile", *args, *[f"print-{n}" for n in names]],
        cwd=tflm,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if r.returncode:
        raise RunError(f"TFLM Makefile failed to parse: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^([A-Za-z_]+)=(.*)$", line)
        if m and m.group(1) in names:
            out[m.group(1)] = m.group(2).strip()
    return out


_REG_DEF = re.compile(r"\bRegister_([A-Z0-9_]+)\s*\(\s*\)\s*\{")


def needed_kernel_sources(tflm: Path, sources: list[str], ops: list[str]) -> list[str]:
    """TFLM kernel sources this model needs: every helper file, and the operator files that define the
    registration of an operator the model uses (a file defining only other operators' Register_* is skipped)."""
    keep = []
    for src in sources:
        try:
            text = (tflm / src).read_text(errors="replace")
        except OSError:
            keep.append(src)
            continue
        defined = _REG_DEF.findall(text)
        if not defined or any(d == op or d.startswith(op + "_") for d in defined for op in ops):
            keep.append(src)
    return keep


def build_library(
    tflm: Path,
    core: str,
    kernels: str,
    gcc_root: str,
    jobs: int,
    log: Path,
    env: dict[str, str],
    ops: list[str],
    full: bool,
    core_opt: str | None = None,
) -> dict[str, Any]:
    """Compile TFLM with its own Makefile rules and flags (nice -n 10) into a static library for this model.

    full: TFLM's whole `microlite` library (315 objects, ~45 min at -j1 on a busy machine). Otherwise only the
    objects this model can use: TFLM's core, its kernel helpers, the files of the model's operators, and
    CMSIS-NN (each compiled by the same Makefile rule, so with the same flags), archived here."""
    args = make_args(core, kernels, gcc_root, core_opt)
    names = [
        "MICROLITE_LIB_PATH",
        "CXXFLAGS",
        "CCFLAGS",
        "INCLUDES",
        "CORE_OPTIMIZATION_LEVEL",
        "GENDIR",
        "MICROLITE_LIB_OBJS",
        "MICROLITE_KERNEL_OBJS",
        "MICROLITE_THIRD_PARTY_KERNEL_OBJS",
        "MICROLITE_THIRD_PARTY_OBJS",
        "KERNEL_OBJDIR",
        "MICROLITE_CC_KERNEL_SRCS",
    ]
    v = make_vars(tflm, args, names, env)
    t0 = time.perf_counter()
    if full:
        lib = tflm / v["MICROLITE_LIB_PATH"]
        targets = ["microlite"]
        objs: list[str] = []
    else:
        lib = tflm / v["GENDIR"] / "divqat" / f"libtflm-{'-'.join(sorted(ops)).lower()}.a"
        kdir = v["KERNEL_OBJDIR"]
        kobjs = v["MICROLITE_KERNEL_OBJS"].split()
        ksrc = {re.sub(r"\.(cc|c|S)$", ".o", s): s for s in v["MICROLITE_CC_KERNEL_SRCS"].split()}
        keep_src = set(needed_kernel_sources(tflm, [ksrc.get(o[len(kdir) :], o) for o in kobjs], ops))
        kobjs = [o for o in kobjs if ksrc.get(o[len(kdir) :], o) in keep_src]
        objs = [
            *v["MICROLITE_LIB_OBJS"].split(),
            *kobjs,
            *v["MICROLITE_THIRD_PARTY_KERNEL_OBJS"].split(),
            *v["MICROLITE_THIRD_PARTY_OBJS"].split(),
        ]
        targets = objs
    with log.open("w") as lf:
        r = subprocess.run(
            [
                "nice",
                "-n",
                "10",
                "make",
                f"-j{jobs}",
                "-f",
                "tensorflow/lite/micro/tools/make/Makefile",
                *args,
                *targets,
            ],
            cwd=tflm,
            stdout=lf,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
        if r.returncode == 0 and not full:
            lib.parent.mkdir(parents=True, exist_ok=True)
            lib.unlink(missing_ok=True)
            r = subprocess.run(
                [gcc_root + "arm-none-eabi-ar", "rcs", str(lib), *objs],
                cwd=tflm,
                stdout=lf,
                stderr=subprocess.STDOUT,
                check=False,
            )
    if r.returncode or not lib.is_file():
        raise RunError(f"building TFLM ({core}, {kernels}) failed: see {log}")
    return {
        "lib": lib,
        "vars": {k: v[k] for k in ("CXXFLAGS", "INCLUDES", "CORE_OPTIMIZATION_LEVEL")},
        "make_args": args,
        "seconds": time.perf_counter() - t0,
        "objects": len(objs) if objs else None,
        "full_library": full,
    }


def model_ops(model_path: Path) -> list[dict[str, Any]]:
    """Subgraph 0's operators in execution order: builtin name and output shape (for labels)."""
    sys.path.insert(0, str(ROOT))
    from divqat_tvm.compiler.tflite_import import builtin_name, load_tflite

    m = load_tflite(model_path)
    sg = m.Subgraphs(0)
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        outs = op.OutputsAsNumpy()
        shape = [int(d) for d in sg.Tensors(int(outs[0])).ShapeAsNumpy()] if len(outs) else []
        ops.append({"index": i, "op": builtin_name(m, op), "output_shape": shape})
    return ops


def write_model_header(path: Path, model: bytes, op_names: list[str]) -> None:
    uniq = sorted(set(op_names))
    bad = [o for o in uniq if o.startswith(("CUSTOM:", "BUILTIN_"))]
    if bad:
        raise UsageError(f"the model uses operators the harness cannot register: {', '.join(bad)}")
    lines = [
        "/* generated by scripts/tflm_reference.py */",
        "#pragma once",
        "#include <stdint.h>",
        f"#define TFLM_MODEL_LEN {len(model)}u",
        f"#define TFLM_NUM_OPS_RESOLVER {len(uniq)}",
        "#define TFLM_REGISTER_OPS(r) do { "
        + " ".join(f'if ((r).{resolver_method(o)}() != kTfLiteOk) fail("register {o}");' for o in uniq)
        + " } while (0)",
        "alignas(16) static const uint8_t TFLM_MODEL_DATA[TFLM_MODEL_LEN] = {",
    ]
    for i in range(0, len(model), 24):
        lines.append(",".join(str(b) for b in model[i : i + 24]) + ",")
    lines.append("};")
    path.write_text("\n".join(lines) + "\n")


def board_info(board: str) -> dict[str, Any]:
    return json.loads((BOARDS_DIR / f"{board}.json").read_text())


def arch_flags(flags: list[str]) -> list[str]:
    return [f for f in flags if f.startswith(("-mcpu=", "-mfpu=", "-mfloat-abi=", "-mthumb", "-mlittle-endian"))]


def build_firmware(
    tflm: Path,
    lib: dict[str, Any],
    model_path: Path,
    ops: list[dict[str, Any]],
    board: str,
    out: Path,
    runs: int,
    arena_bytes: int,
    gcc_root: str,
) -> Path:
    b = board_info(board)
    out.mkdir(parents=True, exist_ok=True)
    write_model_header(out / "tflm_model.h", model_path.read_bytes(), [o["op"] for o in ops])
    mem = b["memory"]
    ld = (HARNESS / "link.ld.in").read_text()
    for k, val in {
        "FLASH_ORIGIN": mem["flash"]["origin"],
        "FLASH_LENGTH": mem["flash"]["length"],
        "RAM_ORIGIN": mem["ram"]["origin"],
        "RAM_LENGTH": mem["ram"]["length"],
        "STACK_BYTES": STACK_BYTES,
        "NAMES": "values",
    }.items():
        ld = ld.replace(f"@{k}@", str(val))
    (out / "link.ld").write_text(ld)
    v = lib["vars"]
    cxx, cc = gcc_root + "arm-none-eabi-g++", gcc_root + "arm-none-eabi-gcc"
    cxxflags, includes = shlex.split(v["CXXFLAGS"]), shlex.split(v["INCLUDES"])
    arch = arch_flags(cxxflags)
    defs = [f"-DTFLM_UART_BASE={b['uart']['base']}u", f"-DTFLM_RUNS={runs}", f"-DTFLM_ARENA_BYTES={arena_bytes}"]
    log = out / "build.log"
    cmds = [
        [
            cxx,
            *cxxflags,
            v["CORE_OPTIMIZATION_LEVEL"],
            *includes,
            f"-I{out}",
            *defs,
            "-Wno-unused-function",
            "-c",
            str(HARNESS / "main.cc"),
            "-o",
            str(out / "main.o"),
        ],
        [cc, *arch, "-O2", "-ffunction-sections", "-c", str(HARNESS / "startup.c"), "-o", str(out / "startup.o")],
        [
            cxx,
            *arch,
            "-nostartfiles",
            "--specs=nano.specs",
            "-T",
            str(out / "link.ld"),
            "-Wl,--gc-sections",
            f"-Wl,-Map={out / 'firmware.map'}",
            str(out / "main.o"),
            str(out / "startup.o"),
            str(lib["lib"]),
            "-lm",
            "-o",
            str(out / "firmware.elf"),
        ],
    ]
    with log.open("w") as lf:
        for c in cmds:
            lf.write(" ".join(c) + "\n")
            lf.flush()
            r = subprocess.run(["nice", "-n", "10", *c], cwd=tflm, stdout=lf, stderr=subprocess.STDOUT, check=False)
            if r.returncode:
                raise RunError(f"building the harness for {board} failed: see {log}")
    return out / "firmware.elf"


def section_sizes(elf: Path, gcc_root: str) -> dict[str, int]:
    r = subprocess.run([gcc_root + "arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=False)
    out = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].startswith(".") and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out


def run_qemu(elf: Path, board: str, timeout: float) -> tuple[int, str]:
    machine = board_info(board)["qemu"]["machine"]
    cmd = [
        "qemu-system-arm",
        "-M",
        machine,
        "-kernel",
        str(elf),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-icount",
        "shift=0,align=off,sleep=off",
        "-semihosting-config",
        "enable=on,target=native",
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise RunError(f"QEMU ({board}) did not finish within {timeout:.0f} s") from e
    return r.returncode, r.stdout + r.stderr


def measure(
    tflm: Path,
    lib: dict[str, Any],
    model_path: Path,
    ops: list[dict[str, Any]],
    core: str,
    kernels: str,
    out: Path,
    runs: int,
    arena_bytes: int,
    gcc_root: str,
    timeout: float,
) -> dict[str, Any]:
    board = CORE_BOARD[core]
    elf = build_firmware(tflm, lib, model_path, ops, board, out, runs, arena_bytes, gcc_root)
    rc, text = run_qemu(elf, board, timeout)
    (out / "qemu.log").write_text(text)
    res = parse_firmware_output(text)
    if rc != 0 or not res["done"]:
        raise RunError(
            f"firmware on {board} failed (exit {rc}{', ' + res['error'] if res['error'] else ''}): see {out / 'qemu.log'}"
        )
    clock = float(board_info(board)["clock_hz"])
    k = instructions_per_tick(clock)
    per_op = []
    for i, tag, ticks in res["ops"]:
        meta = ops[i] if i < len(ops) else {}
        per_op.append(
            {
                "index": i,
                "op": tag,
                "output_shape": meta.get("output_shape"),
                "ticks": ticks,
                "instructions": round(ticks * k),
            }
        )
    secs = section_sizes(elf, gcc_root)
    totals = res["totals"]
    return {
        "core": core,
        "board": board,
        "kernels": kernels,
        "clock_hz": clock,
        "instructions_per_tick": k,
        "ticks_per_run": totals,
        "instructions": round(totals[-1] * k),
        "instructions_min": round(min(totals) * k),
        "instructions_max": round(max(totals) * k),
        "profiled_total_instructions": round(res["profiled_total"] * k) if res["profiled_total"] else None,
        "per_operator": per_op,
        "arena_used_bytes": res["arena"],
        "output": res["output"],
        "sections_bytes": secs,
        "make_args": lib["make_args"],
        "library_objects": lib["objects"],
        "full_library": lib["full_library"],
        "elf": str(elf),
    }


# --------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _Parser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("model", type=Path, nargs="?", help="int8 .tflite model")
    ap.add_argument("--core", nargs="+", default=["cortex-m7"], help=f"one or more of {', '.join(CORE_BOARD)}")
    ap.add_argument("--kernels", choices=[*KERNELS, "both"], default="cmsis_nn")
    ap.add_argument("--reference-kernels", action="store_true", help="TFLM's reference kernels (= --kernels reference)")
    ap.add_argument(
        "--src",
        type=Path,
        default=DEFAULT_SRC,
        help=f"folder with the pinned source trees (default $DIVQAT_TFLM_SRC or {DEFAULT_SRC})",
    )
    ap.add_argument(
        "--from-mirror",
        type=Path,
        metavar="ROOT",
        help="extract the pinned trees into --src from git clones under ROOT",
    )
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"build cache (default {DEFAULT_CACHE})")
    ap.add_argument("--out", type=Path, help="firmware folder (default CACHE/fw/<model>)")
    ap.add_argument("--json", type=Path, help="write the figures here (default: print them)")
    ap.add_argument("--runs", type=int, default=2, help="timed inferences (the last is reported; all are kept)")
    ap.add_argument("--arena-kb", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=1, help="make -j (the build runs under nice -n 10)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per QEMU run")
    ap.add_argument(
        "--full-library",
        action="store_true",
        help="build TFLM's whole microlite library, not only the objects this model can use (slow)",
    )
    ap.add_argument(
        "--core-opt",
        choices=["-Os", "-O2", "-O3"],
        default=None,
        help="override TFLM's core (interpreter) optimisation level, e.g. --core-opt=-O2; default: the Makefile's -Os",
    )
    ap.add_argument(
        "--print-pins", action="store_true", help="print the repositories and commits --src needs, and exit"
    )
    a = ap.parse_args(argv)
    if a.print_pins:
        return a
    if a.model is None:
        raise UsageError("a .tflite model is required (see --help)")
    bad = [c for c in a.core if c not in CORE_BOARD]
    if bad:
        raise UsageError(f"unknown core {bad[0]!r}: choose from {', '.join(CORE_BOARD)}")
    if a.runs < 1 or a.jobs < 1 or a.arena_kb < 1 or a.timeout <= 0:
        raise UsageError("--runs, --jobs, --arena-kb and --timeout must be positive")
    if a.reference_kernels:
        if a.kernels not in ("cmsis_nn", "reference"):
            raise UsageError("--reference-kernels contradicts --kernels " + a.kernels)
        a.kernels = "reference"
    if not a.model.is_file():
        raise UsageError(f"model file {a.model} does not exist")
    with a.model.open("rb") as f:
        if f.read(8)[4:8] != b"TFL3":
            raise UsageError(f"{a.model} is not a TFLite flatbuffer (no TFL3 identifier)")
    if a.from_mirror is not None and not a.from_mirror.is_dir():
        raise UsageError(f"--from-mirror {a.from_mirror} is not a folder")
    return a


def tools() -> str:
    """The folder holding arm-none-eabi-gcc (with a trailing slash); UsageError when a tool is missing."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        raise UsageError(
            "arm-none-eabi-gcc not found on PATH: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
        )
    for t in ("make", "qemu-system-arm"):
        if shutil.which(t) is None:
            raise UsageError(f"{t} not found on PATH")
    root = str(Path(gcc).parent) + "/"
    r = subprocess.run(
        [root + "arm-none-eabi-g++", "-x", "c++", "-mthumb", "-mcpu=cortex-m4", "-fsyntax-only", "-"],
        input="#include <cstdarg>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        raise UsageError("arm-none-eabi-g++ has no C++ headers: apt-get install libstdc++-arm-none-eabi-newlib")
    return root


def run(a: argparse.Namespace) -> dict[str, Any]:
    if a.from_mirror is not None:
        for t in ("git", "tar"):
            if shutil.which(t) is None:
                raise UsageError(f"{t} not found on PATH (needed by --from-mirror)")
        a.src.mkdir(parents=True, exist_ok=True)
        extract_from_mirror(a.from_mirror, a.src)
    pins = check_sources(a.src)
    gcc_root = tools()
    for name, p in pins.items():
        if p["matches"] is False:
            print(f"{PROG}: warning: {name} is at {p['found']}, not the pinned {p['pinned']}", file=sys.stderr)
    a.cache.mkdir(parents=True, exist_ok=True)
    tflm = prepare_workspace(a.src, a.cache)
    env = make_env(a.cache)
    if subprocess.run([sys.executable, "-c", "import numpy, PIL"], capture_output=True, check=False).returncode:
        raise UsageError(
            f"TFLM's Makefile runs python3 with numpy and Pillow while parsing: install them for {sys.executable}"
        )
    ops = model_ops(a.model)
    kernels = list(KERNELS) if a.kernels == "both" else [a.kernels]
    gcc_v = subprocess.run(
        [gcc_root + "arm-none-eabi-gcc", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    qemu_v = subprocess.run(
        ["qemu-system-arm", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    results = []
    out_root = a.out or a.cache / "fw" / (a.model.stem + (f"-core{a.core_opt.lstrip('-')}" if a.core_opt else ""))
    for core in a.core:
        for k in kernels:
            print(f"{PROG}: building TFLM for {core} ({k}) ...", file=sys.stderr)
            logs = a.cache / "logs"
            logs.mkdir(exist_ok=True)
            lib = build_library(
                tflm,
                core,
                k,
                gcc_root,
                a.jobs,
                logs / f"make-{core}-{k}.log",
                env,
                sorted({o["op"] for o in ops}),
                a.full_library,
                a.core_opt,
            )
            r = measure(
                tflm,
                lib,
                a.model,
                ops,
                core,
                k,
                out_root / f"{core}-{k}",
                a.runs,
                a.arena_kb * 1024,
                gcc_root,
                a.timeout,
            )
            print(
                f"{PROG}: {a.model.name} {core} ({r['board']}) {k}: {r['instructions']:,} instructions per inference",
                file=sys.stderr,
            )
            results.append(r)
    return {
        "tool": "scripts/tflm_reference.py",
        "model": str(a.model),
        "model_name": a.model.name,
        "model_sha256": hashlib.sha256(a.model.read_bytes()).hexdigest(),
        "operators": ops,
        "input": "LCG x=12345, x=x*1664525+1013904223 mod 2^32, byte=(x>>24)-128, rewritten before each run",
        "counting": "SysTick ticks under qemu -icount shift=0 x 1e9/clock_hz (instructions, emulated)",
        "pins": pins,
        "toolchain": gcc_v,
        "qemu": qemu_v,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        a = parse_args(argv)
        if a.print_pins:
            for name, (repo, ref) in PINS.items():
                print(f"{name}\thttps://github.com/{repo}\t{ref}")
            return 0
        doc = run(a)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    text = json.dumps(doc, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
        print(f"{PROG}: wrote {a.json}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
