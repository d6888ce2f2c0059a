"""BN folding equivalence, straight-through gradients, observers, and the student's structure."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divqat_tvm.errors import DivqatError
from divqat_tvm.models import ConvBNAct, ResidualAdd, build_model
from divqat_tvm.quant import primitives as P
from divqat_tvm.quant.config import QuantConfig
from divqat_tvm.quant.fake_quant import ActFakeQuant, fake_quantize, fake_quantize_weight
from divqat_tvm.quant.fold import fold_conv_bn
from divqat_tvm.quant.prepare import quantize_model, quantized_ops
from divqat_tvm.quant.qmodules import QConv2d

torch.set_num_threads(1)


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


@pytest.mark.parametrize("groups", [1, 4])
def test_fold_conv_bn_matches_eval_block(groups: int) -> None:
    torch.manual_seed(0)
    block = _randomize_bn(ConvBNAct(4, 8, 3, 2, groups=groups, relu=False))
    x = torch.randn(5, 4, 9, 9)
    w, b = fold_conv_bn(block.conv, block.bn)
    y = F.conv2d(x, w, b, block.conv.stride, block.conv.padding, groups=groups)
    torch.testing.assert_close(y, block(x), atol=1e-5, rtol=1e-5)


def test_weight_fake_quant_values_and_ste_gradient() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3, requires_grad=True)
    wq, s = fake_quantize_weight(w)
    expected = P.dequantize(
        P.quantize(w.detach(), s, torch.zeros(6, dtype=torch.int32), -127, 127, axis=0), s, torch.zeros(6), axis=0
    )
    torch.testing.assert_close(wq, expected, atol=0, rtol=0)
    assert (wq.detach() - w.detach()).abs().max() <= s.max() / 2 + 1e-7
    (wq * torch.arange(wq.numel()).reshape(wq.shape)).sum().backward()
    # symmetric per-channel range never clips, so the STE passes the gradient unchanged
    torch.testing.assert_close(w.grad, torch.arange(w.numel()).reshape(w.shape).float())


def test_activation_ste_masks_clipped_values() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.49, 3.0], requires_grad=True)
    y = fake_quantize(x, torch.tensor(0.01), torch.tensor(-20, dtype=torch.int32), -128, 127)
    # representable range: [(-128+20)*0.01, (127+20)*0.01] = [-1.08, 1.47]
    torch.testing.assert_close(y.detach(), torch.tensor([-1.08, -0.5, 0.0, 0.49, 1.47]), atol=1e-6, rtol=0)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_observer_minmax_ema_and_freeze() -> None:
    fq = ActFakeQuant(momentum=0.5).train()
    fq(torch.tensor([-1.0, 1.0]))
    fq(torch.tensor([-3.0, 0.5]))
    assert (float(fq.min_val), float(fq.max_val)) == (-3.0, 1.0)  # running min/max by default
    fq.set_mode("ema")
    fq(torch.tensor([-1.0, 3.0]))
    assert (float(fq.min_val), float(fq.max_val)) == (-2.0, 2.0)  # halfway at momentum 0.5
    fq.freeze()
    scale = float(fq.scale)
    fq(torch.tensor([-100.0, 100.0]))
    assert float(fq.scale) == scale and float(fq.max_val) == 2.0
    with pytest.raises(RuntimeError):
        ActFakeQuant().eval()(torch.zeros(2))  # never calibrated


class _Net(nn.Module):
    """Every op quantization knows: conv (depthwise too), residual add, max/avg/global pool, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 8)
        self.a = ConvBNAct(8, 8)
        self.b = ConvBNAct(8, 8, relu=False)
        self.add = ResidualAdd()
        self.mp = nn.MaxPool2d(2)
        self.dw = ConvBNAct(8, 8, groups=8)
        self.ap = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.add(self.b(self.a(x)), x)
        x = self.ap(self.dw(self.mp(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def test_student_is_a_deep_copy_with_folded_ops() -> None:
    torch.manual_seed(0)
    teacher = _randomize_bn(_Net())
    before = copy.deepcopy(teacher.state_dict())
    x = torch.randn(16, 3, 12, 12)
    student = quantize_model(teacher, QuantConfig(method="ptq"), [x])
    kinds = [op.kind for op in quantized_ops(student)]
    assert kinds == [
        "input",
        "conv",
        "conv",
        "conv",
        "add",
        "maxpool",
        "conv",
        "avgpool",
        "avgpool",
        "flatten",
        "linear",
    ]
    assert student.observers_frozen
    t_ptrs = {p.data_ptr() for p in teacher.parameters()} | {b.data_ptr() for b in teacher.buffers()}
    assert not t_ptrs & {p.data_ptr() for p in student.parameters()}
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # teacher untouched
    # relu-fused outputs get zero point -128 (the int8 clamp is the ReLU)
    convs = [op.module for op in quantized_ops(student) if op.kind == "conv"]
    assert [int(c.out_fq.zero_point) for c in convs if c.relu] == [-128] * 3
    student.eval()
    y_t, y_s = teacher(x), student(x)
    assert (y_t - y_s).abs().max() < 0.1 * y_t.abs().max()


def test_conv_bias_is_int32_at_input_scale_times_weight_scale() -> None:
    torch.manual_seed(0)
    teacher = _randomize_bn(_Net())
    student = quantize_model(teacher, QuantConfig(method="ptq"), [torch.randn(8, 3, 12, 12)]).eval()
    op = next(op for op in quantized_ops(student) if op.kind == "conv")
    m: QConv2d = op.module
    x = torch.randn(2, 3, 12, 12)
    xin = op.in_fq[0](x)
    s_w = P.weight_scales(m.weight)
    bscale = op.in_fq[0].scale * s_w
    b_int = torch.round(m.bias / bscale)
    w_int = torch.round(m.weight / s_w.view(-1, 1, 1, 1))
    # integer reference: accumulate int products exactly in float64, then the float requantization
    x_int = torch.round(xin / op.in_fq[0].scale) + op.in_fq[0].zero_point
    acc = F.conv2d((x_int - op.in_fq[0].zero_point).double(), w_int.double(), b_int.double(), padding=1)
    y_ref = torch.clamp(
        torch.round(torch.relu(acc * bscale.double().view(1, -1, 1, 1)) / m.out_fq.scale.double())
        + m.out_fq.zero_point,
        -128,
        127,
    )
    y = torch.round(m(xin, op.in_fq[0].scale) / m.out_fq.scale) + m.out_fq.zero_point
    assert (y.double() - y_ref).abs().max() <= 1  # float32 conv vs exact integer: at most one rounding flip
    assert (y.double() == y_ref).float().mean() > 0.99


def test_unsupported_ops_fail_clearly() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(x)

    with pytest.raises(DivqatError, match="cannot quantize module c"):
        quantize_model(Bad())


@pytest.mark.parametrize("arch", ["tinycnn", "resnet8", "vgg", "dscnn"])
def test_registry_models_quantize(arch: str) -> None:
    torch.manual_seed(0)
    m = build_model(arch, 3, 10, 16).eval()
    x = torch.randn(4, 3, 16, 16)
    s = quantize_model(m, QuantConfig(method="ptq"), [x]).eval()
    assert s(x).shape == (4, 10)
