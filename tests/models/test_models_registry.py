"""Every registry model: builds for many shapes, traces with torch.fx using only the allowed blocks,
outputs [N, K] logits; MAC and parameter counts against independent references."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from divqat_tvm.errors import DivqatError
from divqat_tvm.models import ConvBNAct, ResidualAdd, build_model, count_macs_params, model_names

torch.set_num_threads(1)

CONFIGS = [(3, 32, 10), (1, 28, 10), (3, 16, 100), (2, 7, 3), (1, 1, 2)]  # (channels, size, classes)
ALLOWED_LEAVES = (ConvBNAct, ResidualAdd, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)


class _BlockTracer(torch.fx.Tracer):
    """Treats the allowed blocks as leaves, as quantization does, so anything else shows up as a node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ALLOWED_LEAVES) or super().is_leaf_module(m, qualname)


def test_registry_names() -> None:
    assert {"resnet8", "vgg", "dscnn", "tinycnn"} <= set(model_names())


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize(("c", "s", "k"), CONFIGS)
def test_builds_traces_and_outputs_logits(name: str, c: int, s: int, k: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=c, num_classes=k, input_size=s).eval()
    x = torch.randn(3, c, s, s)
    y = model(x)
    assert y.shape == (3, k) and y.dtype == torch.float32 and torch.isfinite(y).all()
    gm = torch.fx.symbolic_trace(model)
    assert torch.equal(gm(x), y)


@pytest.mark.parametrize("name", model_names())
def test_only_allowed_blocks_in_the_graph(name: str) -> None:
    model = build_model(name, 3, 10, 32)
    graph = _BlockTracer().trace(model)
    for node in graph.nodes:
        assert node.op in ("placeholder", "call_module", "output"), f"{name}: {node.op} {node.target}"
        if node.op == "call_module":
            assert isinstance(model.get_submodule(node.target), ALLOWED_LEAVES), node.target
    for m in model.modules():
        if isinstance(m, ConvBNAct):
            assert m.conv.bias is None  # the bias comes from BN folding
        if isinstance(m, nn.AdaptiveAvgPool2d):
            assert m.output_size in (1, (1, 1))


def test_trains_a_step() -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 10, 16)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_resnet8_matches_mlperf_tiny() -> None:
    """MLPerf Tiny's ResNet-8 at 3x32x32, 10 classes: 12,501,632 MACs. Parameters: 77,370 conv/linear
    weights and biases (hand count) + 672 BN gamma/beta (336 BN channels) = 78,042."""
    model = build_model("resnet8", 3, 10, 32)
    macs, params = count_macs_params(model, (3, 32, 32))
    assert macs == 12_501_632
    assert params == 78_042
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn_channels == 336


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize(("c", "s", "k"), [(3, 32, 10), (1, 28, 10), (2, 9, 5)])
def test_macs_agree_with_torch_flop_counter(name: str, c: int, s: int, k: int) -> None:
    model = build_model(name, c, k, s).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, c, s, s))
    macs, params = count_macs_params(model, (c, s, s))
    assert macs == counter.get_total_flops() // 2  # the flop counter counts 2 flops per MAC
    assert params == sum(p.numel() for p in model.parameters())


def test_count_restores_training_mode_and_bn_statistics() -> None:
    model = build_model("vgg", 3, 10, 32).train()
    stats = [b.clone() for b in model.buffers()]
    count_macs_params(model, (3, 32, 32))
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))


def test_tinycnn_is_small() -> None:
    _, params = count_macs_params(build_model("tinycnn", 1, 10, 28), (1, 28, 28))
    assert 10_000 <= params <= 20_000


def test_bad_names_and_sizes() -> None:
    with pytest.raises(DivqatError, match="resnet8"):
        build_model("resnet50")
    with pytest.raises(DivqatError, match="num_classes"):
        build_model("vgg", 3, 1, 32)
