"""QAT trains the student's own weights; DivQAT α=0 is QAT bit for bit; the KL cap bounds the loss; resume."""

from __future__ import annotations

import copy

import pytest
import torch

import divqat_tvm.train.loop as loop
from divqat_tvm.data import load_dataset
from divqat_tvm.models import build_model
from divqat_tvm.quant.config import DivQATConfig, QuantConfig
from divqat_tvm.train.loop import TrainConfig, fit
from divqat_tvm.train.losses import CrossEntropy, DivQATLoss, kl_per_sample
from divqat_tvm.train.metrics import accuracy, predict_logits
from divqat_tvm.train.recipes import make_student, train_teacher

torch.set_num_threads(1)
DATA = "synthetic:1x12x12:4"


@pytest.fixture(scope="module")
def data():
    return load_dataset(DATA, "train", augment=True), load_dataset(DATA, "test")


@pytest.fixture(scope="module")
def teacher(data):
    torch.manual_seed(0)
    m = build_model("tinycnn", 1, 4, 12)
    train_teacher(m, data[0], TrainConfig(epochs=3, lr=0.05, progress=False))
    return m.eval()


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "lr": 0.003, "batch_size": 64, "progress": False, **kw})


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_qat_trains_the_students_own_weights(data, teacher) -> None:
    t_before = _weights(teacher)
    init, _ = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg(epochs=0))
    student, hist = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg())
    assert len(hist) == 2
    changed = [n for n, p in student.named_parameters() if not torch.equal(p, init.state_dict()[n])]
    assert len(changed) == len(list(student.parameters())), "every student weight and bias must train"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, t_before[k]), f"teacher tensor {k} changed"


def test_wrong_optimizer_parameters_are_detected(data, teacher, monkeypatch) -> None:
    """The authors' old bug (optimizer over the original model's parameters): the student stays unchanged."""
    decoy = copy.deepcopy(teacher)
    monkeypatch.setattr(loop, "make_optimizer", lambda model, cfg: torch.optim.SGD(decoy.parameters(), lr=cfg.lr))
    init, _ = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg(epochs=0))
    student, _ = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg())
    assert all(torch.equal(p, init.state_dict()[n]) for n, p in student.named_parameters())


def test_divqat_alpha_zero_is_qat_exactly(data, teacher) -> None:
    qat, hq = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg())
    div, hd = make_student(teacher, data[0], QuantConfig(method="divqat"), _cfg(), DivQATConfig(alpha=0.0))
    assert hd[-1]["kl"] > 0  # the KL term was really computed
    wq, wd = qat.state_dict(), div.state_dict()
    assert wq.keys() == wd.keys()
    for k in wq:
        torch.testing.assert_close(wd[k], wq[k], atol=0, rtol=0, msg=k)
    assert [h["ce"] for h in hq] == [h["ce"] for h in hd]


def test_divqat_alpha_positive_differs_from_qat(data, teacher) -> None:
    qat, _ = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg())
    div, _ = make_student(teacher, data[0], QuantConfig(method="divqat"), _cfg(), DivQATConfig(alpha=1.0))
    assert any(not torch.equal(a, b) for a, b in zip(qat.parameters(), div.parameters()))


def test_kl_cap_bounds_the_loss_and_its_gradient() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 10, (32,))
    c = torch.randint(0, 10, (32,))
    teacher = 20 * torch.nn.functional.one_hot(c, 10).float()
    student = (20 * torch.nn.functional.one_hot((c + 1) % 10, 10).float()).requires_grad_()  # KL >> cap both ways
    for direction in ("teacher_student", "student_teacher"):
        loss = DivQATLoss(DivQATConfig(alpha=2.0, kl_cap=0.3, kl_direction=direction))
        parts = loss(student, y, teacher)
        assert float(parts.kl) == pytest.approx(0.3)
        assert float(parts.loss.detach()) >= float(parts.ce.detach()) - 2.0 * 0.3 - 1e-6
        uncapped = DivQATLoss(DivQATConfig(alpha=2.0, kl_cap=None, kl_direction=direction))(student, y, teacher)
        assert float(uncapped.loss.detach()) < float(parts.loss.detach()) - 10  # without the cap the term is unbounded
        # capped samples get only the cross-entropy gradient
        g_div = torch.autograd.grad(parts.loss, student)[0]
        g_ce = torch.autograd.grad(torch.nn.functional.cross_entropy(student, y), student)[0]
        torch.testing.assert_close(g_div, g_ce)
    # uncapped value is the textbook KL
    p, q = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    a, b = torch.softmax(p, 1), torch.softmax(q, 1)
    assert float(kl_per_sample(p, q)) == pytest.approx(float((a * (a / b).log()).sum()))


def test_divqat_alpha_one_stays_stable_and_accurate(data, teacher) -> None:
    x, y = data[1].tensors()
    t_logits = predict_logits(teacher, x)
    qat, _ = make_student(teacher, data[0], QuantConfig(method="qat"), _cfg(epochs=3))
    div, hist = make_student(teacher, data[0], QuantConfig(method="divqat"), _cfg(epochs=3), DivQATConfig(alpha=1.0))
    lq, ld = predict_logits(qat, x), predict_logits(div, x)
    assert all(h["loss"] >= h["ce"] - 1.0 * 0.3 - 1e-6 for h in hist)
    assert accuracy(ld, y) >= accuracy(lq, y) - 0.05
    assert ld.abs().max() < 10 * t_logits.abs().max()  # no runaway logits
    from divqat_tvm.train.metrics import mean_kl

    assert mean_kl(t_logits, ld) > mean_kl(t_logits, lq)


def test_resume_after_kill_matches_uninterrupted(data, teacher, tmp_path) -> None:
    quant = QuantConfig(method="divqat", freeze_observers_after=1)
    d = DivQATConfig(alpha=0.5)
    full, hf = make_student(teacher, data[0], quant, _cfg(epochs=3), d)

    class Killed(Exception):
        pass

    real_fit = loop.fit

    def kill_after_first_epoch(*a, **kw):
        def boom(epoch, stats):
            if epoch == 0:
                raise Killed

        return real_fit(*a, **{**kw, "on_epoch_end": boom})

    import divqat_tvm.train.recipes as pipeline

    resume = tmp_path / "student.resume.pt"
    pipeline.fit = kill_after_first_epoch
    try:
        with pytest.raises(Killed):
            make_student(teacher, data[0], quant, _cfg(epochs=3), d, resume_path=resume)
    finally:
        pipeline.fit = real_fit
    assert resume.exists()
    torch.manual_seed(12345)  # a restarted process has some other RNG state
    resumed, hr = make_student(teacher, data[0], quant, _cfg(epochs=3), d, resume_path=resume)
    assert not resume.exists()
    assert [h["loss"] for h in hr] == [h["loss"] for h in hf]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=0, rtol=0, msg=k)
    assert resumed.observers_frozen


def test_resume_file_with_other_settings_is_refused(data, tmp_path) -> None:
    from divqat_tvm.errors import CheckpointError

    m = build_model("tinycnn", 1, 4, 12)
    resume = tmp_path / "r.pt"

    def stop(epoch, stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(m, data[0], _cfg(epochs=2), CrossEntropy(), resume_path=resume, on_epoch_end=stop)
    with pytest.raises(CheckpointError, match="different settings"):
        fit(m, data[0], _cfg(epochs=2, lr=0.1), CrossEntropy(), resume_path=resume)


def test_kl_direction_and_temperature() -> None:
    torch.manual_seed(1)
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    ts = DivQATLoss(DivQATConfig(alpha=1.0, kl_cap=None)).divergence(s, t)
    st = DivQATLoss(DivQATConfig(alpha=1.0, kl_cap=None, kl_direction="student_teacher")).divergence(s, t)
    torch.testing.assert_close(ts, kl_per_sample(t, s))
    torch.testing.assert_close(st, kl_per_sample(s, t))
    assert not torch.allclose(ts, st)
    hot = DivQATLoss(DivQATConfig(alpha=1.0, kl_cap=None, temperature=4.0)).divergence(s, t)
    torch.testing.assert_close(hot, kl_per_sample(t / 4, s / 4))
    assert float(hot.mean()) < float(ts.mean())  # a high temperature softens both distributions
    parts = DivQATLoss(DivQATConfig(alpha=0.5, kl_cap=None))(s, y, t)
    torch.testing.assert_close(parts.loss, torch.nn.functional.cross_entropy(s, y) - 0.5 * ts.mean())


def test_divqat_leaves_the_teacher_frozen_and_untouched(data, teacher) -> None:
    before = _weights(teacher)
    flags = [p.requires_grad for p in teacher.parameters()]
    init, _ = make_student(teacher, data[0], QuantConfig(method="divqat"), _cfg(epochs=0), DivQATConfig(alpha=1.0))
    student, _ = make_student(teacher, data[0], QuantConfig(method="divqat"), _cfg(), DivQATConfig(alpha=1.0))
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats too: the teacher ran in eval mode on a copy
    assert [p.requires_grad for p in teacher.parameters()] == flags
    assert all(not torch.equal(p, init.state_dict()[n]) for n, p in student.named_parameters())
