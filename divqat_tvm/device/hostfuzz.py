"""Host fuzzing of the device code (firmware/fuzz/): the firmware's frame decoder, dispatcher, inference path
and post-processing built for the host with clang's libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer.

`build_fuzzer(out_dir)` compiles firmware/src/{main,protocol,postprocess,profile,uart_common}.c unchanged, with
firmware/fuzz/fuzz_device.c standing in for the board, clock and stack, and the tiny_dense test fixture as the
model. `run_fuzzer(...)` runs it and parses libFuzzer's figures. The committed seed corpus is
firmware/fuzz/corpus/ (`write_seed_corpus` regenerates it from `device.malformed`); CI runs
tests/reliability/test_host_fuzz.py, a longer campaign is scripts/fuzz_firmware.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from divqat_tvm.defenses.spec import DefenseSpec
from divqat_tvm.device.build import FIRMWARE_DIR, WARNING_CFLAGS
from divqat_tvm.errors import DeviceError
from divqat_tvm.resources import data_dir

FUZZ_DIR = FIRMWARE_DIR / "fuzz"
CORPUS_DIR = FUZZ_DIR / "corpus"
FIRMWARE_SOURCES = ["main.c", "protocol.c", "postprocess.c", "profile.c", "uart_common.c"]
SANITIZE = "address,undefined"
DEFAULT_DEFENSE = "dcp:beta=0.5,gamma=0.1,nu=1000"


def fixture_model_dir() -> Path:
    """The model the fuzz build runs: tests/fixtures/tiny_dense (hand-written C following the contract)."""
    for base in (data_dir("firmware").parent / "tests", Path(__file__).resolve().parents[2] / "tests"):
        d = base / "fixtures" / "tiny_dense"
        if (d / "model.c").is_file():
            return d
    raise DeviceError(
        "the fuzz build needs tests/fixtures/tiny_dense, which this installation lacks.",
        "Run from a source checkout of divqat-tvm.",
    )


def clang() -> str:
    exe = shutil.which("clang")
    if exe is None:
        raise DeviceError(
            "clang was not found on PATH (the fuzz build needs libFuzzer).",
            "Install it: apt-get install -y clang libclang-rt-14-dev (or run scripts/setup.sh).",
        )
    return exe


def build_fuzzer(out_dir: str | Path, defense: str = DEFAULT_DEFENSE, coverage: bool = False) -> Path:
    """Compile the fuzz target (or, with coverage=True, a source-coverage build of it for llvm-cov); returns
    the executable. Rebuilt only when a source or flag changed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = fixture_model_dir()
    spec = DefenseSpec.parse(defense)
    inst = ["-fprofile-instr-generate", "-fcoverage-mapping"] if coverage else []
    san = (
        [f"-fsanitize=fuzzer-no-link,{SANITIZE}", "-fno-sanitize-recover=all"]
        if not coverage
        else ["-fsanitize=fuzzer-no-link"]
    )
    base = [
        "-g",
        "-O1",
        "-std=gnu11",
        "-ffp-contract=off",
        "-fno-fast-math",
        "-fno-omit-frame-pointer",
        f"-I{FUZZ_DIR}",
        f"-I{FIRMWARE_DIR / 'include'}",
        f"-I{model}",
        *spec.c_defines(),
        *san,
        *inst,
    ]
    fw = [FIRMWARE_DIR / "src" / n for n in FIRMWARE_SOURCES] + [FUZZ_DIR / "fuzz_device.c"]
    mod = [model / "model.c", model / "kernels.c"]
    h = hashlib.sha256(" ".join(base).encode())
    for f in fw + mod + sorted((FIRMWARE_DIR / "include").glob("*.h")) + [FUZZ_DIR / "fw_config.h", model / "model.h"]:
        h.update(f.read_bytes())
    exe = out / ("fuzz_device_cov" if coverage else "fuzz_device")
    stamp = out / (exe.name + ".stamp")
    if exe.is_file() and stamp.is_file() and stamp.read_text() == h.hexdigest():
        return exe
    cc = clang()
    objs = []
    for src in fw + mod:
        obj = out / f"{src.parent.name}_{src.stem}.o"
        warn = WARNING_CFLAGS if src in fw else ["-Wall"]
        extra = ["-include", "dq_profile.h"] if src.name == "model.c" else []
        _run([cc, *base, *warn, *extra, "-c", str(src), "-o", str(obj)], f"compiling {src.name} for the fuzzer")
        objs.append(str(obj))
    link = [f"-fsanitize=fuzzer,{SANITIZE}"] if not coverage else ["-fsanitize=fuzzer"]
    _run([cc, *link, *inst, *objs, "-lm", "-o", str(exe)], "linking the fuzzer")
    stamp.write_text(h.hexdigest())
    return exe


def _run(cmd: list[str], what: str) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise DeviceError(f"{what} failed: {p.stderr.strip()[-2000:]}", "Fix the C named above.")


@dataclass
class FuzzResult:
    """What a libFuzzer run reports: inputs executed, edges (cov) and features (ft) covered, corpus size,
    crashes/leaks/timeouts found (with the files libFuzzer wrote), and its log."""

    returncode: int
    inputs: int = 0
    coverage_edges: int = 0
    features: int = 0
    corpus_units: int = 0
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""


def run_fuzzer(
    exe: Path,
    work_corpus: Path,
    seed_corpora: list[Path] | None = None,
    runs: int = 100_000,
    seed: int = 1,
    max_len: int = 512,
    max_total_time: int = 0,
    artifacts: Path | None = None,
    extra: list[str] | None = None,
) -> FuzzResult:
    """Run libFuzzer: new units go to `work_corpus` (never into the committed seed corpus)."""
    work_corpus.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts or work_corpus.parent / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(exe),
        f"-runs={runs}",
        f"-seed={seed}",
        f"-max_len={max_len}",
        "-print_final_stats=1",
        "-timeout=10",
        # no RSS limit: Linux keeps ru_maxrss across execve, so a fuzzer started by a large process (a long
        # pytest run holding torch and TVM) inherits its parent's peak and would report a false out-of-memory.
        # Single allocations above 2 GB are still findings.
        "-rss_limit_mb=0",
        "-malloc_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
        *(extra or []),
    ]
    if max_total_time:
        cmd.append(f"-max_total_time={max_total_time}")
    cmd += [str(work_corpus)] + [str(d) for d in (seed_corpora or [])]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
            "PATH": "/usr/bin:/bin",
        },
    )
    log = p.stderr
    r = FuzzResult(p.returncode, log=log)
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    r.inputs = int(m.group(1)) if m else 0
    covs = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    if covs:
        r.coverage_edges, r.features, r.corpus_units = (int(v) for v in covs[-1])
    m = re.search(r"Done (\d+) runs in (\d+) second", log)
    r.seconds = float(m.group(2)) if m else 0.0
    r.findings = sorted(
        str(f) for f in artifacts.glob("*") if f.name.split("-")[0] in ("crash", "leak", "timeout", "oom", "slow")
    )
    if p.returncode != 0 and not r.findings:
        r.findings.append(f"exit {p.returncode}")
    return r


def _seed_info():  # the fuzz build's device, as INFO would describe it (firmware/fuzz/fw_config.h)
    from divqat_tvm.device.protocol import DeviceInfo

    return DeviceInfo(
        1,
        "0.1.0",
        "systick",
        2,
        True,
        True,
        (1, 1, 4, 4),
        16,
        4,
        0.0078125,
        0,
        0.0625,
        3,
        2,
        8,
        1_000_000,
        0x60000000,
        4096,
        16 + 4 + 64,
        16384,
        0,
        0.5,
        0.1,
        1000.0,
        "fuzz",
        "host-fuzz",
        "tiny_dense",
    )


def seed_inputs(per_kind: int = 2, seed: int = 0) -> list[bytes]:
    """Seeds: raw frames of every malformed kind (device/malformed.py) and valid requests (mode byte 0), a few
    structured scripts (mode 1) and post-processing vectors (mode 2)."""
    import numpy as np

    from divqat_tvm.device import malformed as M
    from divqat_tvm.device.protocol import T_INFER, T_INFO, T_SHUTDOWN, T_STATS

    info = _seed_info()
    rng = np.random.default_rng(seed)
    out = [b"\0" + c.data for c in M.generate(rng, info, per_kind * len(M.KINDS), truncated_every=len(M.KINDS))]
    out += [
        b"\0" + M.frame(T_INFO, 1),
        b"\0" + M.frame(T_STATS, 0xFFFF),
        b"\0" + M.frame(T_SHUTDOWN, 3),
        b"\0" + M.frame(T_INFER, 4, bytes(4) + rng.bytes(16)),
        b"\0" + M.frame(T_INFER, 5, bytes([1, 0, 0, 0]) + (4096 - 16).to_bytes(4, "little")),
        b"\0" + M.frame(T_INFO, 6) + M.frame(T_INFER, 7, bytes(4) + rng.bytes(16)) + M.frame(T_STATS, 8),
        b"\0" + M.frame(T_INFO, 9)[:6],
        b"\0" + M.frame(T_INFER, 10, bytes(20))[:15],
    ]  # stalls in the header, the payload
    out += [b"\1" + rng.bytes(int(rng.integers(8, 120))) for _ in range(8)]
    out += [b"\2" + rng.bytes(int(rng.integers(4, 64))) for _ in range(4)]
    return out


def write_seed_corpus(dest: Path = CORPUS_DIR, per_kind: int = 2) -> int:
    """(Re)write the committed seed corpus; returns the number of files."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in dest.glob("seed-*"):
        f.unlink()
    seeds = seed_inputs(per_kind)
    for s in seeds:
        (dest / f"seed-{hashlib.sha1(s).hexdigest()[:16]}").write_bytes(s)
    return len(set(seeds))


def line_coverage(
    out_dir: Path, corpora: list[Path], files: tuple[str, ...] = ("protocol.c", "main.c", "postprocess.c")
) -> dict[str, float]:
    """Line coverage (%) of firmware sources when the corpora are replayed through a source-coverage build
    (llvm-profdata / llvm-cov), per file."""
    exe = build_fuzzer(out_dir, coverage=True)
    raw = out_dir / "cov.profraw"
    inputs = [str(f) for d in corpora for f in sorted(Path(d).glob("*")) if f.is_file()]
    # replay in chunks (argument list length); each chunk writes its own profile
    profiles = []
    for i in range(0, len(inputs), 500):
        prof = out_dir / f"cov-{i}.profraw"
        subprocess.run(
            [str(exe), "-runs=0", *inputs[i : i + 500]],
            capture_output=True,
            check=False,
            env={"LLVM_PROFILE_FILE": str(prof), "PATH": "/usr/bin:/bin"},
        )
        if prof.exists():
            profiles.append(str(prof))
    merged = out_dir / "cov.profdata"
    prof_tool, cov_tool = shutil.which("llvm-profdata"), shutil.which("llvm-cov")
    if not profiles or prof_tool is None or cov_tool is None:
        return {}
    subprocess.run([prof_tool, "merge", "-sparse", *profiles, "-o", str(merged)], check=True, capture_output=True)
    raw.unlink(missing_ok=True)
    rep = subprocess.run(
        [cov_tool, "report", str(exe), f"-instr-profile={merged}"], capture_output=True, text=True, check=True
    ).stdout
    cov = {}
    for line in rep.splitlines():
        parts = line.split()
        if parts and Path(parts[0]).name in files and Path(parts[0]).parent.name == "src":
            cov[Path(parts[0]).name] = float(parts[-4].rstrip("%"))  # the "Lines Cover" column
    return cov
