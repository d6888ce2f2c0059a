"""Kernel choice by measurement (compiler/tune.py): the choice follows the counts, is stored in the cache and
the manifest, is reused without measuring (same C), and every choice stays bit-exact with the numpy reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler import ops, tune
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Add, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.reference import run_reference
from divqat_tvm.errors import CompileError

sys.path.insert(0, str(Path(__file__).parent))
from compiler_models import random_conv  # noqa: E402


def small_graph(rng: np.random.Generator) -> Graph:
    """3x3 conv, 1x1 conv (read in place: three candidates), residual add, 1x1 conv out."""
    t = {
        "x": QTensor("x", (1, 6, 5, 4), 0.05, 3, layout="NHWC"),
        "a": QTensor("a", (1, 6, 5, 8), 0.06, -5, layout="NHWC"),
        "b": QTensor("b", (1, 6, 5, 8), 0.07, 2, layout="NHWC"),
        "s": QTensor("s", (1, 6, 5, 8), 0.1, -20, layout="NHWC"),
        "y": QTensor("y", (1, 6, 5, 4), 0.1, 0, layout="NHWC"),
    }
    ops = [
        random_conv("c3x3", "x", "a", 4, 8, rng, (3, 3), pad=(1, 1, 1, 1)),
        random_conv("c1x1", "a", "b", 8, 8, rng),
        Add("add", ["a", "b"], "s", act_min=-20, act_max=127),
        random_conv("out", "s", "y", 8, 4, rng),
    ]
    return Graph(t, ops, "x", "y", layout="NHWC")


FAKE_COST = {"tvm": 900.0, "im2col": 500.0, "direct": 700.0}


def fake_measure(build_dir: Path) -> list[float]:
    """Counts that make TE the fastest for the add and im2col the fastest for the 1x1 convs, native otherwise
    (from the compiled folder's manifest, so they follow what was really compiled)."""
    ops = json.loads((build_dir / "manifest.json").read_text())["ops"]
    counts = []
    for o in ops:
        k = o["kernel"]
        if k["name"] == "tvm":
            counts.append(FAKE_COST["tvm"] if o["kind"] == "add" else 5000.0)
        else:
            counts.append(FAKE_COST.get(k["variant"].get("columns", ""), 1000.0))
    return counts


def _compile(tmp_path: Path, name: str, graph: Graph, tuning: tune.Tuning | None) -> dict:
    return generate(graph, tmp_path / name, requant="fixed", manifest={"core": "cortex-m7"}, tuning=tuning)


def _exact(tmp_path: Path, name: str, graph: Graph, rng: np.random.Generator) -> None:
    x = rng.integers(-128, 128, (30, *graph.input_tensor.shape[1:])).astype(np.int8)
    want = run_reference(graph, x, "fixed")
    assert int((HostModel(tmp_path / name).run(x) != want).sum()) == 0
    assert len(np.unique(want)) > 3


def test_candidates_per_layer() -> None:
    graph = small_graph(np.random.default_rng(0))
    cands = [list(ops.candidates(graph, op, "fixed")) for op in graph.ops]
    assert cands == [
        ["native", "te"],
        ["native", "native-im2col", "te"],
        ["native", "te"],
        ["native", "native-im2col", "te"],
    ]
    assert list(ops.candidates(graph, graph.ops[0], "float")) == ["te"]  # "float": TE only, nothing to tune


@pytest.mark.slow
def test_tuned_choice_is_recorded_reused_and_exact(tmp_path) -> None:
    rng = np.random.default_rng(1)
    graph = small_graph(rng)
    cache = tmp_path / "cache.json"
    m = _compile(tmp_path, "tuned", graph, tune.Tuning(cache, fake_measure, work_dir=tmp_path / "work", board="fake"))
    picks = {o["name"]: o["kernel"]["tuned"]["choice"] for o in m["ops"]}
    assert picks == {"c3x3": "native", "c1x1": "native-im2col", "add": "te", "out": "native-im2col"}
    assert m["ops"][2]["kernel"]["name"] == "tvm" and m["ops"][1]["kernel"]["variant"]["columns"] == "im2col"
    assert m["tune"] == {"cache": str(cache), "measured": True, "board": "fake"}
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 4  # the two 1x1 convs differ (channels, zero points)
    rec = m["ops"][1]["kernel"]["tuned"]
    assert entries[rec["key"]]["instructions"] == {"native": 700, "native-im2col": 500, "te": 5000}
    assert rec["source"] == "cache" and rec["instructions"] == entries[rec["key"]]["instructions"]
    _exact(tmp_path, "tuned", graph, rng)

    # a later compile without measuring: the same choices from the cache, the same C
    again = _compile(tmp_path, "again", graph, tune.Tuning(cache))
    assert [o["kernel"] for o in again["ops"]] == [o["kernel"] for o in m["ops"]]
    for f in ("kernels.c", "model.c"):
        assert (tmp_path / "again" / f).read_text() == (tmp_path / "tuned" / f).read_text()
    assert again["tune"]["measured"] is False

    # an empty cache: the defaults (the hand-written kernels), recorded as such
    plain = _compile(tmp_path, "plain", graph, tune.Tuning(tmp_path / "none.json"))
    assert [o["kernel"]["tuned"]["choice"] for o in plain["ops"]] == ["native"] * 4
    assert {o["kernel"]["tuned"]["source"] for o in plain["ops"]} == {"default (no cache entry)"}
    _exact(tmp_path, "plain", graph, rng)


def test_cache_of_another_format_is_refused(tmp_path) -> None:
    graph = small_graph(np.random.default_rng(2))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"entries": {}}))
    with pytest.raises(CompileError, match="not a version-1 divqat-tvm tuning cache"):
        tune.cached_choices(graph, "fixed", "cortex-m7", bad)
    bad.write_text("{not json")
    with pytest.raises(CompileError, match="not readable JSON"):
        tune.cached_choices(graph, "fixed", "cortex-m7", bad)


def test_tuning_needs_a_core(tmp_path) -> None:
    graph = small_graph(np.random.default_rng(3))
    with pytest.raises(CompileError, match="needs a core"):
        generate(graph, tmp_path / "m", requant="fixed", tuning=tune.Tuning(tmp_path / "c.json"))


def test_cache_keys_depend_on_core_and_shape_not_weights() -> None:
    g1, g2 = small_graph(np.random.default_rng(4)), small_graph(np.random.default_rng(5))
    k1 = [layer.key for layer in tune.tunable_layers(g1, "fixed", "cortex-m7")]
    assert k1 == [layer.key for layer in tune.tunable_layers(g2, "fixed", "cortex-m7")]
    assert not set(k1) & {layer.key for layer in tune.tunable_layers(g1, "fixed", "cortex-m4")}


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
def test_tune_measures_under_qemu(tmp_path) -> None:
    """The CLI's measure (profiling firmware on the core's QEMU board): real counts, the fewest win, exact."""
    from divqat_tvm.cli.compile import tuning_for

    rng = np.random.default_rng(6)
    graph = small_graph(rng)
    cache = tmp_path / "cache.json"
    tuning = tuning_for("cortex-m7", tmp_path / "m", cache, True)
    assert tuning.board == "mps2-an500"
    m = generate(
        graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7", "target": "mps2-an500"}, tuning=tuning
    )
    for o in m["ops"]:
        counts = o["kernel"]["tuned"]["instructions"]
        assert set(counts) == set(o["kernel"]["tuned"]["candidates"]) and min(counts.values()) > 0
        assert counts[o["kernel"]["tuned"]["choice"]] == min(counts.values())
    _exact(tmp_path, "m", graph, rng)


@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc")
def test_compile_command_uses_the_tuning_cache(tmp_path, capsys) -> None:
    """`divqat-tvm compile MODEL --tune-cache CACHE` (no --tune): the cache's choices, recorded and printed."""
    import tflite_testmodels as tm

    from divqat_tvm.cli import main
    from divqat_tvm.compiler.tflite_import import import_tflite

    p = tmp_path / "zoo.tflite"
    p.write_bytes(tm.zoo_model(1))
    layers = tune.tunable_layers(import_tflite(p), "fixed", "cortex-m7")
    assert layers
    cache = tmp_path / "cache.json"
    tune.save_cache(cache, {layer.key: {"choice": "te", "instructions": {"te": 1}} for layer in layers})
    out = tmp_path / "zoo_m7"
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(out), "--tune-cache", str(cache)]) in (
        0,
        None,
    )
    m = json.loads((out / "manifest.json").read_text())
    tuned = [o for o in m["ops"] if "tuned" in o["kernel"]]
    assert [o["index"] for o in tuned] == [layer.index for layer in layers]
    assert all(o["kernel"]["name"] == "tvm" and o["kernel"]["tuned"]["source"] == "cache" for o in tuned)
    assert m["tune"] == {"cache": str(cache), "measured": False, "board": None}
    assert "kernels by tuning cache" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
def test_choices_from_the_cache_stay_exact_with_litert_under_qemu(tmp_path) -> None:
    """AD01 (ten FULLY_CONNECTED layers) with every layer on the TE kernel by the cache, as --tune picks on the
    Cortex-M4 (LiteRT's double rounding in software costs less in TVM's loop): bit-exact with BUILTIN_REF on
    the host (200 inputs) and the emulated M4 (20)."""
    from test_coverage_rank import AD01, litert, litert_run

    from divqat_tvm.compiler.tflite_import import compile_tflite, import_tflite
    from divqat_tvm.oracle.backend_device import QemuOracle

    assert AD01.is_file(), f"the MLPerf Tiny model is not at {AD01}"
    layers = tune.tunable_layers(import_tflite(AD01), "fixed", "cortex-m4")
    assert len(layers) == 10
    cache = tmp_path / "cache.json"
    tune.save_cache(cache, {layer.key: {"choice": "te", "instructions": {}} for layer in layers})
    out = tmp_path / "ad01"
    m = compile_tflite(AD01, out, target="mps2-an386", core="cortex-m4", tuning=tune.Tuning(cache))
    assert [o["kernel"]["name"] for o in m["ops"] if o["kind"] == "dense"] == ["tvm"] * 10
    xs = np.random.default_rng(9).integers(-128, 128, (200, 640)).astype(np.int8)
    ref = litert_run(litert(AD01), xs[:, None])[:, 0]
    assert int((HostModel(out).run(xs) != ref).sum()) == 0
    with QemuOracle(out, board="mps2-an386", transfer="shared", instances=1) as dev:
        got = np.stack([r.logits for r in dev.run_int8(xs[:20])])
    assert int((got != ref[:20]).sum()) == 0
