"""Host fuzzing of the device code in CI (issue #19): the firmware's decoder, dispatcher, inference path and
post-processing, built with clang's libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer
(divqat_tvm/device/hostfuzz.py, firmware/fuzz/), run for 100,000 inputs from the committed seed corpus:
no finding. A longer campaign is scripts/fuzz_firmware.py."""

from __future__ import annotations

import subprocess

import pytest

from divqat_tvm.device import hostfuzz as H

pytestmark = pytest.mark.needs_tools("clang", "llvm-cov", "llvm-profdata")


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory):
    return H.build_fuzzer(tmp_path_factory.mktemp("fuzz"))


def test_seed_corpus_is_committed_and_current(tmp_path):
    assert len(list(H.CORPUS_DIR.glob("seed-*"))) >= 40
    assert sum(f.stat().st_size for f in H.CORPUS_DIR.iterdir()) < 64 * 1024  # small
    assert H.write_seed_corpus(tmp_path) == len(list(H.CORPUS_DIR.glob("seed-*")))
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f.name for f in H.CORPUS_DIR.glob("seed-*"))


def test_seeds_replay_clean(fuzzer, tmp_path):
    p = subprocess.run([str(fuzzer), "-runs=0", str(H.CORPUS_DIR)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-3000:]


def test_the_harness_finds_a_planted_bug(tmp_path):
    """The output check is live: a build whose error frames carry a status out of range traps at once."""
    import shutil

    from divqat_tvm.device import build as B

    fw = tmp_path / "firmware"
    shutil.copytree(B.FIRMWARE_DIR, fw)
    src = fw / "src" / "protocol.c"
    src.write_text(
        src.read_text().replace(
            "uint8_t p[8] = {status, req_type, 0, 0};", "uint8_t p[8] = {(uint8_t)(status + 200u), req_type, 0, 0};"
        )
    )
    orig = (H.FIRMWARE_DIR, H.FUZZ_DIR)
    H.FIRMWARE_DIR, H.FUZZ_DIR = fw, fw / "fuzz"
    try:
        exe = H.build_fuzzer(tmp_path / "planted")
    finally:
        H.FIRMWARE_DIR, H.FUZZ_DIR = orig
    r = H.run_fuzzer(exe, tmp_path / "corpus", [H.CORPUS_DIR], runs=1000)
    assert r.findings


@pytest.mark.slow
def test_hundred_thousand_inputs_under_asan_ubsan_find_nothing(fuzzer, tmp_path):
    r = H.run_fuzzer(fuzzer, tmp_path / "corpus", [H.CORPUS_DIR], runs=100_000, seed=19)
    assert r.returncode == 0 and r.findings == [], r.log[-3000:]
    assert r.inputs >= 100_000
    assert r.coverage_edges >= 250, r.coverage_edges
    cov = H.line_coverage(tmp_path / "cov", [tmp_path / "corpus", H.CORPUS_DIR])
    assert cov["protocol.c"] >= 95 and cov["main.c"] >= 85 and cov["postprocess.c"] >= 90, cov
