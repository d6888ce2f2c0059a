"""One DefenseSpec (divqat_tvm/defenses/spec.py) for Python and C: the generated dq_defense_config.h and the
host build's -D flags hold exactly the spec's float32 values, the torch twins take the spec's defaults, and
no defence constant is spelled out in firmware/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.defenses import DCP, ReverseSigmoid, parse_defense, postprocessor
from divqat_tvm.defenses import rs as rs_mod
from divqat_tvm.defenses import spec as S
from divqat_tvm.errors import DivqatError

ROOT = Path(__file__).resolve().parents[2]
SPECS = ["none", "rs:beta=0.5", "dcp:beta=0.3,gamma=0.7,nu=250", "rs:beta=0.1234567891,gamma=1e-3", "dcp:beta=2"]

PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "dq_postprocess.h"
static unsigned bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
int main(void) {
    printf("%d %d %d %d %u %u %u %u %u\n", DQ_DEFENSE, DQ_DEFENSE_NONE, DQ_DEFENSE_RS, DQ_DEFENSE_DCP,
           bits(DQ_BETA), bits(DQ_GAMMA), bits(DQ_NU), bits(DQ_P_MIN), bits(DQ_P_MAX));
    return 0;
}
"""


def _f32bits(v: float) -> int:
    return int(np.float32(v).view(np.uint32))


def _expected(s: S.DefenseSpec) -> list[int]:
    return [s.code, *S.DEFENSE_CODES.values(), *(_f32bits(v) for v in (s.beta, s.gamma, s.nu, S.P_MIN, S.P_MAX))]


@pytest.mark.needs_tools("gcc")
@pytest.mark.parametrize("text", SPECS)
def test_generated_c_constants_equal_the_spec(tmp_path, text):
    s = S.DefenseSpec.parse(text)
    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / S.HEADER_NAME).write_text(s.c_header())
    inc = [f"-I{ROOT / 'firmware' / 'include'}"]
    for how, extra in (("header", [f"-I{tmp_path}"]), ("flags", s.c_defines())):
        exe = tmp_path / f"prog-{how}"
        subprocess.run(
            [
                "gcc",
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                *inc,
                *extra,
                str(tmp_path / "prog.c"),
                "-o",
                str(exe),
            ],
            check=True,
            capture_output=True,
        )
        got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
        assert got == _expected(s), how


def test_c_needs_the_generated_configuration(tmp_path):
    """Without dq_defense_config.h or the flags, postprocess.c does not compile: C has no defaults to drift."""
    proc = subprocess.run(
        [
            "gcc",
            "-fsyntax-only",
            f"-I{ROOT / 'firmware' / 'include'}",
            str(ROOT / "firmware" / "src" / "postprocess.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and S.HEADER_NAME in proc.stderr


def test_no_defence_constant_is_spelled_out_in_firmware():
    pattern = re.compile(
        r"(?<![\w.])(0\.1f?|1000(\.0)?f?|1e-0?6f?|0\.999999f?)(?![\w.])|#define DQ_(BETA|GAMMA|NU|P_M\w+)\b"
    )
    hits = []
    for p in sorted((ROOT / "firmware").rglob("*.[ch]")):
        if "fuzz" in p.relative_to(ROOT).parts:
            continue  # the host fuzz harness's own sanity bounds are not device constants
        code = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), p.read_text(), flags=re.DOTALL)
        hits += [
            f"{p.relative_to(ROOT)}:{i + 1}: {line.strip()}"
            for i, line in enumerate(code.splitlines())
            if pattern.search(line.split("//")[0])
        ]
    assert hits == []


def test_twins_and_parsers_take_the_spec():
    assert ReverseSigmoid(0.5).gamma == S.DEFAULT_GAMMA == 0.1
    assert (DCP(0.5).gamma, DCP(0.5).nu) == (S.DEFAULT_GAMMA, S.DEFAULT_NU) == (0.1, 1000.0)
    assert (rs_mod.EPS, rs_mod.P_MIN, rs_mod.P_MAX) == (S.EPS, S.P_MIN, S.P_MAX)
    for text in SPECS:
        s = S.DefenseSpec.parse(text)
        assert S.parse_defense_spec(text) == s == S.DefenseSpec.parse(s.spec())
        assert S.from_postprocessor(parse_defense(text)) == s
        assert parse_defense(text) == postprocessor(s)
    d = S.DefenseSpec.parse("dcp:beta=0.5")
    assert (d.gamma, d.nu) == (S.DEFAULT_GAMMA, S.DEFAULT_NU)
    for bad in ["rs:beta=1,gamma=0", "dcp:beta=1,nu=0", "rs:beta=1e40", "dcp:beta=1,nu=inf"]:
        with pytest.raises(DivqatError, match="out of range"):
            S.DefenseSpec.parse(bad)
    with pytest.raises(DivqatError):
        S.DefenseSpec("rs", -1.0)
