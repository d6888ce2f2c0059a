"""The query log: durable appends, torn-tail recovery, corruption and set-up mismatch errors; an attack
killed mid-run resumes with no query sent twice and a whole log and result; offline replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attack_fixtures import SHAPE, CountingOracle, K, SurrogateSet, make_student, make_victim
from divqat_tvm.attacks import (
    DFMEConfig,
    FitConfig,
    KnockoffConfig,
    MAZEConfig,
    QueryLog,
    QueryLogError,
    replay_log,
    run_attack,
)
from divqat_tvm.attacks.querylog import FINGERPRINT, LoggedOracle
from divqat_tvm.oracle.backend_torch import TorchOracle

CONFIGS = {
    "knockoff": KnockoffConfig(
        budget=200, policy="adaptive", query_batch=8, fit=FitConfig(epochs=3, lr=0.1, momentum=0.9)
    ),
    "dfme": DFMEConfig(budget=1_200, batch_size=16, epoch_itrs=3, ngf=8, nz=16),
    "maze": MAZEConfig(budget=1_200, batch_size=16, ngf=8, latent_dim=16, ndirs=3),
}


def batch(n, seed):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, *SHAPE)).astype(np.float32), r.dirichlet(np.ones(K), size=n).astype(np.float32)


def test_roundtrip_and_header_check(tmp_path):
    path = tmp_path / "q.qlog"
    log = QueryLog.open(path, {"attack": "x", "seed": 1})
    (x1, p1), (x2, p2) = batch(3, 0), batch(5, 1)
    log.append(x1, p1)
    log.append(x2, p2)
    log.close()
    again = QueryLog.read(path)
    assert again.num_queries == 8 and again.header == {"attack": "x", "seed": 1}
    x, p = again.arrays()
    np.testing.assert_array_equal(x, np.concatenate([x1, x2]))
    np.testing.assert_array_equal(p, np.concatenate([p1, p2]))
    with pytest.raises(QueryLogError, match="different attack set-up.*seed"):
        QueryLog.open(path, {"attack": "x", "seed": 2})


def test_torn_tail_is_cut_and_appends_continue(tmp_path):
    path = tmp_path / "q.qlog"
    log = QueryLog.open(path, {"a": 1})
    log.append(*batch(4, 0))
    log.append(*batch(4, 1))
    log.close()
    whole = path.stat().st_size
    with open(path, "r+b") as f:  # a crash in the middle of the second record
        f.truncate(whole - 100)
    log = QueryLog.open(path, {"a": 1})
    assert len(log.batches) == 1
    log.append(*batch(2, 2))
    log.close()
    assert [len(x) for x, _ in QueryLog.read(path)] == [4, 2]


def test_corruption_inside_is_an_error(tmp_path):
    path = tmp_path / "q.qlog"
    log = QueryLog.open(path, {"a": 1})
    log.append(*batch(4, 0))
    log.append(*batch(4, 1))
    log.close()
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the first batch record
    path.write_bytes(bytes(data))
    with pytest.raises(QueryLogError, match="CRC"):
        QueryLog.read(path)
    (tmp_path / "bad.qlog").write_bytes(b"hello")
    with pytest.raises(QueryLogError, match="not a divqat-tvm query log"):
        QueryLog.read(tmp_path / "bad.qlog")


def test_logged_oracle_refuses_a_diverging_rerun(tmp_path):
    log = QueryLog.open(tmp_path / "q.qlog", {"input_shape": list(SHAPE), "num_classes": K})
    x, p = batch(4, 0)
    log.append(x, p)
    lo = LoggedOracle(None, log)
    np.testing.assert_array_equal(lo.query(x), p)
    with pytest.raises(QueryLogError, match="ran out"):
        lo.query(x)
    with pytest.raises(QueryLogError, match="differs"):
        LoggedOracle(None, log).query(x + 1.0)


def test_answers_only_log_resumes_but_cannot_replay(tmp_path):
    header = {"input_shape": [1, 28, 28], "num_classes": K}
    r = np.random.default_rng(0)
    x, p = r.normal(size=(16, 1, 28, 28)).astype(np.float32), r.dirichlet(np.ones(K), size=16).astype(np.float32)
    sizes = {}
    for inputs in (True, False):
        path = tmp_path / f"{inputs}.qlog"
        log = QueryLog.open(path, {**header, **({} if inputs else {"log_inputs": False})})
        for _ in range(4):
            log.append(x, p)
        log.close()
        sizes[inputs] = path.stat().st_size
    assert sizes[False] * 15 < sizes[True]  # 784 floats per MNIST image vs 17 per fingerprint
    log = QueryLog.open(tmp_path / "False.qlog", {**header, "log_inputs": False})
    assert not log.inputs and log.num_queries == 64 and log.batches[0][0].shape == (16, FINGERPRINT + 1)
    np.testing.assert_array_equal(LoggedOracle(None, log).query(x), p)  # a re-run batch is recognised
    with pytest.raises(QueryLogError, match="differs"):
        LoggedOracle(None, log).query(x + 0.01)
    with pytest.raises(QueryLogError, match="keeps only the answers"):
        log.arrays()
    with pytest.raises(QueryLogError, match="different attack set-up.*log_inputs"):
        QueryLog.open(tmp_path / "False.qlog", header)  # resuming must keep the same mode


@pytest.mark.parametrize("log_inputs", [True, False])
@pytest.mark.parametrize("attack", ["knockoff", "dfme", "maze"])
def test_kill_and_resume_sends_no_query_twice(tmp_path, evaluator, attack, log_inputs):
    cfg = CONFIGS[attack]
    sur = SurrogateSet() if attack == "knockoff" else None
    # Reference: one uninterrupted run.
    ref_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K))
    ref = run_attack(
        attack,
        ref_v,
        make_student(),
        tmp_path / "ref",
        cfg,
        seed=3,
        surrogate=sur,
        evaluator=evaluator,
        log_inputs=log_inputs,
    )
    # Crash after ~half the budget: the oracle raises as a dying process would stop answering.
    crash_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K), fail_after=cfg.budget // 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_attack(
            attack,
            crash_v,
            make_student(),
            tmp_path / "run",
            cfg,
            seed=3,
            surrogate=sur,
            evaluator=evaluator,
            log_inputs=log_inputs,
        )
    assert not (tmp_path / "run" / "result.json").exists()
    logged = QueryLog.read(tmp_path / "run" / "queries.qlog").num_queries
    assert logged == crash_v.queries > 0
    # Resume in the same folder with a fresh victim: only the rest is asked.
    resume_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K))
    res = run_attack(
        attack,
        resume_v,
        make_student(),
        tmp_path / "run",
        cfg,
        seed=3,
        surrogate=sur,
        evaluator=evaluator,
        log_inputs=log_inputs,
    )
    assert crash_v.queries + resume_v.queries == ref_v.queries == res["queries_used"]
    assert res["queries_replayed_from_log"] == crash_v.queries
    assert res["queries_sent_this_run"] == resume_v.queries
    # No image was asked twice across the two processes, and the answers are what a clean run got.
    sent = np.concatenate(crash_v.seen + resume_v.seen)
    np.testing.assert_array_equal(sent, np.concatenate(ref_v.seen))
    log, ref_log = QueryLog.read(tmp_path / "run" / "queries.qlog"), QueryLog.read(tmp_path / "ref" / "queries.qlog")
    assert log.num_queries == ref_v.queries and log.inputs == log_inputs
    np.testing.assert_array_equal(np.concatenate([b[1] for b in log]), np.concatenate([b[1] for b in ref_log]))
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["stolen_accuracy"] == pytest.approx(ref["stolen_accuracy"])
    assert (tmp_path / "run" / "student.pt").exists()


def test_a_log_begun_with_images_resumes_with_images(tmp_path, evaluator):
    # An attack killed while logging images (e.g. started before answers-only logs existed) resumes in that
    # mode when asked for an answers-only log, instead of being refused as another set-up.
    cfg = CONFIGS["maze"]
    crash_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K), fail_after=cfg.budget // 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_attack("maze", crash_v, make_student(), tmp_path, cfg, seed=3, evaluator=evaluator, log_inputs=True)
    resume_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K))
    res = run_attack("maze", resume_v, make_student(), tmp_path, cfg, seed=3, evaluator=evaluator, log_inputs=False)
    assert res["log_inputs"] is True and res["queries_replayed_from_log"] == crash_v.queries
    assert crash_v.queries + resume_v.queries == res["queries_used"]
    assert QueryLog.read(tmp_path / "queries.qlog").arrays()[0].shape == (res["queries_used"], *SHAPE)


def test_replay_trains_a_student_without_any_victim(tmp_path, evaluator):
    cfg = KnockoffConfig(budget=400, fit=FitConfig(epochs=2))
    run_attack(
        "knockoff",
        TorchOracle(make_victim(), SHAPE, K),
        make_student(),
        tmp_path,
        cfg,
        surrogate=SurrogateSet(),
        evaluator=evaluator,
    )
    fresh = make_student(seed=99)
    before = evaluator.accuracy(fresh)
    r = replay_log(tmp_path / "queries.qlog", fresh, FitConfig(epochs=30, lr=0.1, momentum=0.9), evaluator=evaluator)
    assert r["queries_sent"] == 0 and r["queries_in_log"] == 400 and r["loss"] == "knockoff"
    assert r["stolen_accuracy"] > 0.6 > before


QUANT = {"scale": 0.02, "zero_point": -3, "layout": "NCHW"}


class DeviceLikeOracle(CountingOracle):
    """A compiled victim's view: a manifest with the int8 input format, answers on the quantized input."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(TorchOracle(make_victim(), SHAPE, K), fail_after)
        self.manifest = {"input": {"shape": [1, *SHAPE], **QUANT}}

    def _query(self, x):
        from divqat_tvm.attacks.querylog import dequantize_queries, quantize_queries

        return super()._query(dequantize_queries(quantize_queries(x, QUANT), QUANT, SHAPE))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_int8_log_is_small_replays_the_device_bytes_and_checks_reruns(tmp_path, layout):
    from divqat_tvm.attacks.querylog import quantize_queries

    quant = {**QUANT, "layout": layout}
    header = {"input_shape": [3, 8, 8], "num_classes": K}
    r = np.random.default_rng(0)
    xs = [r.uniform(-2, 2, size=(32, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    p = r.dirichlet(np.ones(K), size=32).astype(np.float32)
    for name, h in (("f", header), ("q", {**header, "input_quant": quant})):
        log = QueryLog.open(tmp_path / f"{name}.qlog", h)
        for x in xs:
            log.append(x, p)
        log.close()
    assert (tmp_path / "q.qlog").stat().st_size * 3 < (tmp_path / "f.qlog").stat().st_size
    log = QueryLog.open(tmp_path / "q.qlog", {**header, "input_quant": quant})
    assert log.batches[0][0].dtype == np.int8 and log.batches[0][0].shape == (32, 3 * 8 * 8)
    np.testing.assert_array_equal(log.batches[1][0], quantize_queries(xs[1], quant))  # the device's bytes
    x_all, p_all = log.arrays()
    assert x_all.shape == (128, 3, 8, 8) and x_all.dtype == np.float32
    np.testing.assert_array_equal(quantize_queries(x_all, quant), np.concatenate([b[0] for b in log.batches]))
    assert np.abs(x_all - np.concatenate(xs)).max() <= 0.01 + 1e-6  # half a step of scale 0.02
    np.testing.assert_array_equal(p_all, np.concatenate([p] * 4))
    np.testing.assert_array_equal(LoggedOracle(None, log).query(xs[0] + 1e-5), p)  # a float re-run within atol
    with pytest.raises(QueryLogError, match="differs"):
        LoggedOracle(None, log).query(xs[0] + 0.1)
    with pytest.raises(QueryLogError, match="different attack set-up.*input_quant"):
        QueryLog.open(tmp_path / "q.qlog", header)


@pytest.mark.parametrize("attack", ["knockoff", "dfme"])
def test_compiled_victim_logs_int8_and_resumes_from_it(tmp_path, evaluator, attack):
    cfg = CONFIGS[attack]
    sur = SurrogateSet() if attack == "knockoff" else None
    ref_v = DeviceLikeOracle()
    ref = run_attack(attack, ref_v, make_student(), tmp_path / "ref", cfg, seed=3, surrogate=sur, evaluator=evaluator)
    assert QueryLog.read(tmp_path / "ref" / "queries.qlog").header["input_quant"] == QUANT
    crash_v = DeviceLikeOracle(fail_after=cfg.budget // 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_attack(attack, crash_v, make_student(), tmp_path / "run", cfg, seed=3, surrogate=sur, evaluator=evaluator)
    resume_v = DeviceLikeOracle()
    res = run_attack(
        attack, resume_v, make_student(), tmp_path / "run", cfg, seed=3, surrogate=sur, evaluator=evaluator
    )
    assert res["queries_replayed_from_log"] == crash_v.queries > 0
    assert crash_v.queries + resume_v.queries == ref_v.queries == res["queries_used"]
    np.testing.assert_array_equal(np.concatenate(crash_v.seen + resume_v.seen), np.concatenate(ref_v.seen))
    assert res["stolen_accuracy"] == pytest.approx(ref["stolen_accuracy"])
    a, b = QueryLog.read(tmp_path / "run" / "queries.qlog"), QueryLog.read(tmp_path / "ref" / "queries.qlog")
    for (qa, pa), (qb, pb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(qa, qb)
        np.testing.assert_array_equal(pa, pb)


def test_an_old_float_log_resumes_against_a_compiled_victim(tmp_path, evaluator):
    # A log begun without "input_quant" (every log written before int8 logs, or one of a torch victim) goes on
    # storing float32 images when resumed against a compiled victim, instead of being refused as another set-up.
    cfg = CONFIGS["dfme"]
    crash_v = CountingOracle(TorchOracle(make_victim(), SHAPE, K), fail_after=cfg.budget // 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_attack("dfme", crash_v, make_student(), tmp_path, cfg, seed=3, evaluator=evaluator)
    assert "input_quant" not in QueryLog.read(tmp_path / "queries.qlog").header
    resume_v = DeviceLikeOracle()
    res = run_attack("dfme", resume_v, make_student(), tmp_path, cfg, seed=3, evaluator=evaluator)
    assert res["queries_replayed_from_log"] == crash_v.queries > 0 and resume_v.queries > 0
    log = QueryLog.read(tmp_path / "queries.qlog")
    assert log.quant is None and log.batches[-1][0].dtype == np.float32 and log.num_queries == res["queries_used"]
