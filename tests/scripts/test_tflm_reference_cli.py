"""scripts/tflm_reference.py without TFLM's sources: argument and prerequisite errors are one line, exit code 2,
no traceback; and the pure pieces (op registration names, output parsing, which kernel files a model needs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "tflm_reference.py"


def _mod():
    spec = importlib.util.spec_from_file_location("tflm_reference", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 32)
    return p


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--bogus"],
        ["{missing}"],
        ["{notflite}"],
        ["{model}", "--core", "cortex-m3"],
        ["{model}", "--runs", "0"],
        ["{model}", "--kernels", "tvm"],
        ["{model}", "--src", "{empty}"],
        ["{model}", "--from-mirror", "{missing}"],
    ],
)
def test_argument_errors_are_one_line_with_exit_code_2(argv, model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    notflite = tmp_path / "x.tflite"
    notflite.write_bytes(b"not a flatbuffer at all")
    args = [a.format(model=model, missing=tmp_path / "nope.tflite", notflite=notflite, empty=empty) for a in argv]
    assert _mod().main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("tflm_reference: error: ") and "Traceback" not in err


def test_missing_sources_say_how_to_get_them(model, tmp_path, capsys):
    assert _mod().main([str(model), "--src", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TFLM sources not found" in err and "--print-pins" in err and "--from-mirror" in err
    assert "tflite-micro" in err and "CMSIS-NN" in err and "CMSIS_6" in err


def test_as_a_process_an_error_is_one_line_and_no_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nope.tflite")], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_print_pins_lists_the_pinned_commits(capsys):
    assert _mod().main(["--print-pins"]) == 0
    out = capsys.readouterr().out
    assert "tensorflow/tflite-micro\t90b983c2" in out and "ARM-software/CMSIS-NN\t4ab83cc3" in out
    assert "ARM-software/CMSIS_6\t5782d6f8" in out


def test_pure_pieces():
    m = _mod()
    assert m.resolver_method("CONV_2D") == "AddConv2D"
    assert m.resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert m.resolver_method("AVERAGE_POOL_2D") == "AddAveragePool2D"
    assert m.resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert m.resolver_method("SOFTMAX") == "AddSoftmax" and m.resolver_method("ADD") == "AddAdd"
    assert m.instructions_per_tick(25e6) == 40.0 and m.instructions_per_tick(32e6) == 31.25
    res = m.parse_firmware_output(
        "TFLM-REF 1\nARENA 22820\nTOTAL 0 189949\nTOTAL 1 189948\nOUTPUT -128 127\n"
        "OP 0 CONV_2D 1000\nOP 1 SOFTMAX 90\nPROFILED_TOTAL 1200\nDONE\n"
    )
    assert res["arena"] == 22820 and res["totals"] == [189949, 189948] and res["output"] == [-128, 127]
    assert res["ops"] == [(0, "CONV_2D", 1000), (1, "SOFTMAX", 90)] and res["done"] and res["error"] is None
    assert m.parse_firmware_output("ERROR Invoke\n")["error"] == "ERROR Invoke"


def test_only_the_models_operator_files_are_compiled(tmp_path):
    m = _mod()
    files = {
        "k/conv.cc": "TFLMRegistration Register_CONV_2D() {\n}\nTFLMRegistration Register_CONV_2D_INT8() {}",
        "k/pooling.cc": "TFLMRegistration Register_AVERAGE_POOL_2D() {}\nTFLMRegistration Register_MAX_POOL_2D() {}",
        "k/mul.cc": "TFLMRegistration Register_MUL() {}",
        "k/kernel_util.cc": "int helper() { return 0; }",
        "k/conv_common.cc": "TfLiteStatus CalculateOpDataConv() {}",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    keep = m.needed_kernel_sources(tmp_path, list(files), ["CONV_2D", "MAX_POOL_2D"])
    assert keep == ["k/conv.cc", "k/pooling.cc", "k/kernel_util.cc", "k/conv_common.cc"]


def test_a_tree_is_at_its_pin_by_commit_or_by_tag():
    m = _mod()
    assert m.at_pin("tflite-micro", "90b983c2b3f1480642e040bbd2ddb37b998f3424")
    assert m.at_pin("tflite-micro", "90b983c2")
    assert not m.at_pin("tflite-micro", "0123456789abcdef0123456789abcdef01234567")
    assert m.at_pin("flatbuffers", "v25.9.23") and m.at_pin("flatbuffers", m.TAG_COMMITS["v25.9.23"])
    assert m.at_pin("CMSIS-NN", None) is None
