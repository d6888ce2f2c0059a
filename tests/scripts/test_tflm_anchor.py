"""The TFLite Micro anchor of scripts/bench_mlperf.py: each model's own reference figures, none for a model
without them (no ratio printed), per-operator rows by TFLite operator index. Pure logic: no TFLM, no QEMU."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from divqat_tvm.report.tflm_anchor import (
    AnchorError,
    merge_references,
    model_key,
    parse_models_readme,
    per_operator_table,
    readme_reference,
    reference_from_json,
    tflite_index,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_README = REPO.parent / "shared" / "models" / "README.md"

# the shape of ../shared/models/README.md (its figures), so the parser is tested without the shared folder
README = """# Reference models

## `mlperf-tiny-resnet8-int8.tflite`
- Source: x. 98,496 bytes, sha256 `3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415`.
- Operators: CONV_2D x9. 12,501,632 MACs.

### TFLite Micro on QEMU
| core (QEMU machine) | TFLM + CMSIS-NN | TFLM reference kernels |
| --- | --- | --- |
| Cortex-M7 (mps2-an500) | 30,026,609 (2.40 / MAC) | 109,380,281 (8.75 / MAC) |
| Cortex-M4 (mps2-an386) | 29,863,790 (2.39 / MAC) | 107,488,212 (8.60 / MAC) |
| Cortex-M55 + MVE (mps3-an547) | 4,911,834 (0.39 / MAC) | 97,657,431 (7.81 / MAC) |

Cortex-M7 CMSIS-NN, per operator: conv 3×3 3→16 (32×32) 2,158,661 · conv 3×3 16→16 5,541,716 (twice) ·
add 32×32×16 1,331,064 · softmax 3,586.

Memory (Cortex-M7, CMSIS-NN, -O2): code (.text) 88,924 B (CMSIS-NN 42.1 KB); other read-only data 13,516 B;
model 98,496 B; arena used 54,996 B; stack peak 1,796 B.

## The other MLPerf Tiny reference models
| file | task | input | operators | sha256 (first 16) |
| --- | --- | --- | --- | --- |
| `kws_ref_model.tflite` | keyword spotting, DS-CNN | int8 [1,49,10,1] | CONV_2D | aeea436800704fce |
| `vww_96_int8.tflite` | visual wake words | int8 [1,96,96,3] | same as KWS | 597a384c8c2c8a12 |
| `ad01_int8.tflite` | anomaly detection | int8 [1,640] (2-D, not an image) | FULLY_CONNECTED | 87cf24194ef93d1d |

| model | MACs | Cortex-M7 (mps2-an500) | per MAC | Cortex-M4 (mps2-an386) | Cortex-M55 + MVE (mps3-an547) | arena used |
| --- | --- | --- | --- | --- | --- | --- |
| ResNet-8 | 12,501,632 | 29,961,200 | 2.40 | 29,780,800 | 4,911,656 | 54,996 |
| KWS (DS-CNN) | 2,656,768 | 7,597,920 | 2.86 | 7,580,760 | 1,815,812 | 22,820 |
| VWW (MobileNetV1 0.25) | 7,489,664 | 23,884,480 | 3.19 | 23,776,240 | 6,558,343 | 100,708 |
| AD01 (FC autoencoder) | 264,192 | 583,000 | 2.21 | 582,960 | 150,000 | 2,580 |
"""


def _bench():
    spec = importlib.util.spec_from_file_location("bench_mlperf", REPO / "scripts" / "bench_mlperf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def readme(tmp_path):
    p = tmp_path / "README.md"
    p.write_text(README)
    return p


def test_readme_parser_gives_each_model_its_own_figures():
    m = parse_models_readme(README)
    assert set(m) == {"resnet8", "kws", "vww", "ad01"}
    m7 = {k: m[k]["instructions"]["Cortex-M7"]["cmsis_nn"]["value"] for k in m}
    assert m7 == {"resnet8": 29_961_200, "kws": 7_597_920, "vww": 23_884_480, "ad01": 583_000}
    assert m["kws"]["instructions"]["Cortex-M55"]["cmsis_nn"] == {"value": 1_815_812, "method": "systick"}
    assert m["vww"]["instructions"]["Cortex-M4"]["cmsis_nn"]["value"] == 23_776_240
    r8 = m["resnet8"]["instructions"]
    assert r8["Cortex-M7"]["cmsis_nn_plugin"]["value"] == 30_026_609
    assert r8["Cortex-M55"]["reference_plugin"]["value"] == 97_657_431
    assert "reference_plugin" not in m["kws"]["instructions"]["Cortex-M7"]  # no reference-kernel figure for KWS
    assert m["kws"]["arena_bytes"] == 22_820 and m["ad01"]["macs"] == 264_192
    assert m["kws"]["sha256_prefix"] == "aeea436800704fce"
    ops = m["resnet8"]["per_operator"]["Cortex-M7"]
    assert [v for _, v in ops] == [2_158_661, 5_541_716, 5_541_716, 1_331_064, 3_586]
    assert m["resnet8"]["memory"]["arena_bytes"] == 54_996 and m["resnet8"]["memory"]["code_bytes"] == 88_924
    assert not m["kws"]["per_operator"]


@pytest.mark.skipif(not SHARED_README.is_file(), reason="no ../shared/models/README.md here")
def test_the_shared_readme_parses_to_the_same_per_model_figures():
    m = parse_models_readme(SHARED_README.read_text())
    assert m["kws"]["instructions"]["Cortex-M7"]["cmsis_nn"]["value"] == 7_597_920
    assert m["vww"]["instructions"]["Cortex-M7"]["cmsis_nn"]["value"] == 23_884_480
    assert m["resnet8"]["instructions"]["Cortex-M7"]["cmsis_nn"]["value"] == 29_961_200
    assert len(m["resnet8"]["per_operator"]["Cortex-M7"]) == 16


def test_readme_reference_is_per_model_and_kws_is_never_divided_by_resnet8(readme, tmp_path):
    kws = tmp_path / "kws_ref_model.tflite"
    kws.write_bytes(b"\0" * 8)
    ref = readme_reference(readme, kws)
    assert ref["model_key"] == "kws"
    assert ref["cores"]["Cortex-M7"]["cmsis_nn"] == 7_597_920
    assert "reference" not in ref["cores"]["Cortex-M7"]
    assert ref["per_operator"] == {}
    r8 = readme_reference(readme, tmp_path / "mlperf-tiny-resnet8-int8.tflite")
    assert r8["cores"]["Cortex-M7"] == {
        "cmsis_nn": 29_961_200,
        "cmsis_nn_method": "systick",
        "cmsis_nn_plugin": 30_026_609,
        "reference": 109_380_281,
        "reference_method": "plugin",
    }


def test_a_renamed_copy_is_recognised_by_its_sha256(readme, tmp_path):
    data = b"some model bytes"
    digest = hashlib.sha256(data).hexdigest()
    p = tmp_path / "renamed.tflite"
    p.write_bytes(data)
    text = README.replace("aeea436800704fce", digest[:16])
    readme.write_text(text)
    assert model_key(p, parse_models_readme(text)) == "kws"


def test_a_model_without_a_reference_prints_no_ratio(readme, tmp_path):
    bench = _bench()
    other = tmp_path / "my_model.tflite"
    other.write_bytes(b"\x1c\0\0\0TFL3 not in the README")
    ref = bench.load_reference(other, readme, None)
    assert ref is None
    fp = {"measured": {"model_per_inference": {"mean": 1_234_567.0}, "stack_peak_bytes": 300}}
    summary = bench.summary_rows({"mps2-an500": fp, "mps3-an547": fp}, ref, macs=1000)
    for s in summary.values():
        assert s["tflm_cmsis_nn"] is None and s["ratio_vs_cmsis_nn"] is None and s["ratio_vs_reference"] is None
    rows = bench.instruction_rows(summary)
    cols = list(bench.INSTRUCTION_COLUMNS)
    for row in rows:
        assert row[cols.index("ours: instructions")] == "1,234,567"
        assert row[cols.index("ours / CMSIS-NN")] == "-" and row[cols.index("ours / reference")] == "-"
        assert row[cols.index("TFLM+CMSIS-NN")] == "-"


def test_a_model_with_a_reference_gets_its_own_ratio(readme, tmp_path):
    bench = _bench()
    kws = tmp_path / "kws_ref_model.tflite"
    kws.write_bytes(b"\0" * 8)
    ref = bench.load_reference(kws, readme, None)
    fp = {"measured": {"model_per_inference": {"mean": 7_597_920.0 * 2}, "stack_peak_bytes": 300}}
    s = bench.summary_rows({"mps2-an500": fp}, ref, macs=None)["mps2-an500"]
    assert s["ratio_vs_cmsis_nn"] == pytest.approx(2.0) and s["ratio_vs_reference"] is None
    assert bench.instruction_rows({"mps2-an500": s})[0][4] == "2.00"


def _tflm_json(tmp_path, model: Path, core="cortex-m7", sha=None) -> Path:
    doc = {
        "model_name": model.name,
        "model_sha256": sha or hashlib.sha256(model.read_bytes()).hexdigest(),
        "operators": [
            {"index": 0, "op": "CONV_2D", "output_shape": [1, 25, 5, 64]},
            {"index": 1, "op": "SOFTMAX", "output_shape": [1, 12]},
        ],
        "results": [
            {
                "core": core,
                "kernels": "cmsis_nn",
                "instructions": 7_600_000,
                "arena_used_bytes": 22_820,
                "sections_bytes": {".text": 60_000},
                "per_operator": [
                    {"index": 0, "op": "CONV_2D", "output_shape": [1, 25, 5, 64], "instructions": 7_000_000},
                    {"index": 1, "op": "SOFTMAX", "output_shape": [1, 12], "instructions": 4_000},
                ],
            }
        ],
    }
    p = tmp_path / f"tflm-{core}.json"
    p.write_text(json.dumps(doc))
    return p


def test_tflm_json_reference_is_checked_against_the_model(tmp_path):
    kws = tmp_path / "kws_ref_model.tflite"
    kws.write_bytes(b"kws bytes")
    ref = reference_from_json(_tflm_json(tmp_path, kws), kws)
    assert ref["cores"]["Cortex-M7"]["cmsis_nn"] == 7_600_000
    assert ref["per_operator"]["Cortex-M7"][0] == {"index": 0, "label": "CONV_2D 25x5x64", "instructions": 7_000_000}
    assert ref["memory"]["Cortex-M7"] == {"arena_bytes": 22_820, "code_bytes": 60_000}
    with pytest.raises(AnchorError, match="not on kws_ref_model.tflite"):
        reference_from_json(_tflm_json(tmp_path, kws, sha="0" * 64), kws)
    merged = merge_references([ref, reference_from_json(_tflm_json(tmp_path, kws, core="cortex-m55"), kws)])
    assert set(merged["cores"]) == {"Cortex-M7", "Cortex-M55"}


def test_per_operator_rows_follow_the_tflite_operator_index():
    assert tflite_index("conv_2d_3") == 3 and tflite_index("reshape_14_in") == 14 and tflite_index("softmax") is None
    ours = [
        {"name": "conv_2d_0", "macs": 10, "count": 700.0},
        {"name": "reshape_1_in", "macs": 0, "count": 5.0},
        {"name": "fully_connected_1", "macs": 4, "count": 95.0},
        {"name": "extra", "macs": 0, "count": 1.0},
    ]
    ref = [
        {"index": 0, "label": "CONV_2D", "instructions": 350},
        {"index": 1, "label": "FULLY_CONNECTED", "instructions": 50},
        {"index": 2, "label": "SOFTMAX", "instructions": 9},
    ]
    rows = per_operator_table(ours, ref)
    assert [(r["tflite_index"], r["ours"], r["tflm_cmsis_nn"], r["ratio"]) for r in rows] == [
        (0, 700.0, 350, 2.0),
        (1, 100.0, 50, 2.0),
        (2, None, 9, None),
        (None, 1.0, None, None),
    ]
    assert rows[1]["ours_ops"] == ["reshape_1_in", "fully_connected_1"]


def test_per_operator_table_a_fused_op_against_the_sum_of_its_operators() -> None:
    """A conv fused with its ADD (compiler/fuse.py, 'conv_2d_2+add_3') is compared with both TFLM operators."""
    ours = [
        {"name": "conv_2d_1", "macs": 10, "count": 100.0},
        {"name": "conv_2d_2+add_3", "macs": 10, "count": 150.0},
    ]
    ref = [
        {"index": 1, "label": "conv", "instructions": 200},
        {"index": 2, "label": "conv", "instructions": 200},
        {"index": 3, "label": "add", "instructions": 100},
    ]
    rows = per_operator_table(ours, ref)
    assert [(r["tflite_index"], r["ours"], r["tflm_cmsis_nn"], r["ratio"]) for r in rows] == [
        (1, 100.0, 200, 0.5),
        (2, 150.0, 300, 0.5),
    ]
    assert rows[1]["tflm_label"] == "conv + add" and rows[1]["ours_ops"] == ["conv_2d_2+add_3"]
