"""Float model → int8 fake-quant student, by tracing it with torch.fx and swapping every block for its int8 op.

`quantize_model(model, config)` is the one entry point for PTQ, QAT and DivQAT: they share the student and
differ only in what happens next (calibration only, or training with CE / CE − α·KL in `divqat_tvm.train`).

The student is built from a deep copy of the teacher — its parameters are new tensors, never the teacher's —
and its graph is explicit about quantization:

- the input gets an activation fake quant (`input_fq`);
- `ConvBNAct` → `QConv2d` (BN folded, per-channel weights, int32 bias, fused ReLU, output fake quant);
- `ResidualAdd` → `QAdd`; `nn.Linear` → `QLinear`;
- `nn.MaxPool2d`, `nn.Flatten` (and `torch.flatten`) keep their input's qparams (values stay on the grid);
- `nn.AvgPool2d`, `nn.AdaptiveAvgPool2d(1)` → `QAvgPool` with their own output qparams;
- `nn.Dropout` / `nn.Identity` vanish (they are identities at inference).

Convs and linears receive their input's scale as a second argument (a `get_attr` of the producing fake
quant's `scale` buffer), so the int32 bias scale s_in · s_w is the one the exporter writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

import torch
from torch import fx, nn

from divqat_tvm.errors import DivqatError
from divqat_tvm.models.blocks import ConvBNAct, ResidualAdd
from divqat_tvm.quant.config import QuantConfig
from divqat_tvm.quant.fake_quant import ActFakeQuant
from divqat_tvm.quant.fold import fold_conv_bn
from divqat_tvm.quant.qmodules import QAdd, QAvgPool, QConv2d, QLinear

_PASS_THROUGH = (nn.MaxPool2d, nn.Flatten)
_IDENTITY = (nn.Dropout, nn.Identity)
_SUPPORTED = "ConvBNAct, ResidualAdd, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d(1), nn.Flatten, nn.Linear"


class _BlockTracer(fx.Tracer):
    """Keeps the project's blocks as leaves so each becomes exactly one int8 op."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (ConvBNAct, ResidualAdd)) or super().is_leaf_module(m, qualname)


def _unsupported(what: str) -> DivqatError:
    return DivqatError(
        f"cannot quantize {what}: quantization knows only {_SUPPORTED}.",
        "Build the model from divqat_tvm.models.blocks (see docs/contracts.md).",
    )


def _is_flatten_call(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    )


class QuantizedModel(nn.Module):
    """An int8 fake-quant student: a rewritten fx graph plus the config it was built with.

    Attributes:
        graph_module: the traced, rewritten graph; `export` walks its nodes in order.
        config: the `QuantConfig` (stored in checkpoints so the student can be rebuilt).
    """

    def __init__(self, graph_module: fx.GraphModule, config: QuantConfig) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def observers(self) -> list[ActFakeQuant]:
        return [m for m in self.modules() if isinstance(m, ActFakeQuant)]

    def set_observer_mode(self, mode: str) -> None:
        """ "minmax" for calibration / PTQ, "ema" for QAT."""
        for o in self.observers():
            o.set_mode(mode)

    def freeze_observers(self, frozen: bool = True) -> None:
        for o in self.observers():
            o.freeze(frozen)

    @property
    def observers_frozen(self) -> bool:
        return all(bool(o.frozen) for o in self.observers())

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor | tuple | list], num_batches: int) -> int:
        """Run up to `num_batches` input batches through the student with running min/max observers.

        Observers that are frozen stay frozen. Returns the number of batches used.
        """
        was_training = self.training
        self.set_observer_mode("minmax")
        self.train()
        device = next(self.parameters()).device
        n = 0
        for batch in batches:
            if n >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            self(x.to(device))
            n += 1
        self.train(was_training)
        if n == 0:
            raise DivqatError("calibration got no data.", "Pass a non-empty calibration set.")
        return n

    def input_qparams(self) -> tuple[float, int]:
        """(scale, zero_point) the input is quantized with: what a device applies to a sensor's floats."""
        fq = cast(ActFakeQuant, self.graph_module.get_submodule("input_fq"))  # prepare() always adds it
        return float(fq.scale), int(fq.zero_point)


def _float_model_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    m.eval()
    return m


def quantize_model(
    model: nn.Module,
    config: QuantConfig | None = None,
    calibration: Iterable[torch.Tensor | tuple | list] | None = None,
) -> QuantizedModel:
    """Build the int8 fake-quant student of a float `model` (which is left untouched).

    Args:
        model: a float model built from `divqat_tvm.models.blocks`; BN statistics are folded as they are.
        config: quantization settings (default `QuantConfig()`).
        calibration: optional input batches (or (x, y) pairs); when given, observers are calibrated with
            `config.calibration_batches` of them, and for PTQ frozen, so the result is ready to use/export.

    Returns:
        The student, in train mode with running min/max observers (EMA for QAT/DivQAT after calibration).

    Raises:
        DivqatError: the model contains an operation quantization does not know.
    """
    config = config or QuantConfig()
    src = _float_model_copy(model)
    try:
        traced = _BlockTracer().trace(src)
    except Exception as e:  # fx raises many types on untraceable control flow
        raise DivqatError(
            f"torch.fx could not trace the model ({type(e).__name__}: {e}).",
            "Use the registry models or blocks without data-dependent control flow.",
        ) from e
    modules = dict(src.named_modules())
    root = nn.Module()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    source: dict[fx.Node, str] = {}  # node → path of the ActFakeQuant holding its qparams
    mom = config.observer_momentum
    output_seen = False

    def add(name: str, mod: nn.Module) -> str:
        name = name.replace(".", "_") or "root"
        root.add_module(name, mod)
        return name

    for node in traced.nodes:
        if node.op == "placeholder":
            if env:
                raise _unsupported("a model with more than one input")
            ph = graph.placeholder(node.name)
            name = add("input_fq", ActFakeQuant(mom))
            env[node] = graph.call_module(name, (ph,))
            source[node] = f"{name}"
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise _unsupported("a model with several outputs")
            graph.output(env[out])
            output_seen = True
        elif node.op == "call_module":
            mod = modules[node.target]
            args = [a for a in node.args]
            if isinstance(mod, ConvBNAct):
                (x,) = args
                w, b = fold_conv_bn(mod.conv, mod.bn)
                c = mod.conv
                if c.padding_mode != "zeros" or isinstance(c.padding, str):
                    raise _unsupported(f"conv {node.target} with padding {c.padding!r}/{c.padding_mode}")
                q = QConv2d(w, b, c.stride, c.padding, c.dilation, c.groups, mod.relu, mom)
                name = add(node.target, q)
                s_in = graph.get_attr(f"{source[x]}.scale")
                env[node] = graph.call_module(name, (env[x], s_in))
                source[node] = f"{name}.out_fq"
            elif isinstance(mod, nn.Linear):
                (x,) = args
                b = mod.bias if mod.bias is not None else torch.zeros(mod.out_features)
                name = add(node.target, QLinear(mod.weight, b, mom))
                s_in = graph.get_attr(f"{source[x]}.scale")
                env[node] = graph.call_module(name, (env[x], s_in))
                source[node] = f"{name}.out_fq"
            elif isinstance(mod, ResidualAdd):
                a, b = args
                name = add(node.target, QAdd(mod.relu, mom))
                env[node] = graph.call_module(name, (env[a], env[b]))
                source[node] = f"{name}.out_fq"
            elif isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size not in (1, (1, 1)):
                    raise _unsupported(f"AdaptiveAvgPool2d({mod.output_size}) (only output size 1)")
                if isinstance(mod, nn.AvgPool2d) and (mod.ceil_mode or mod.divisor_override is not None):
                    raise _unsupported("AvgPool2d with ceil_mode or divisor_override")
                (x,) = args
                name = add(node.target, QAvgPool(copy.deepcopy(mod), mom))
                env[node] = graph.call_module(name, (env[x],))
                source[node] = f"{name}.out_fq"
            elif isinstance(mod, _PASS_THROUGH):
                if isinstance(mod, nn.MaxPool2d) and (mod.ceil_mode or mod.return_indices):
                    raise _unsupported("MaxPool2d with ceil_mode or return_indices")
                if isinstance(mod, nn.Flatten) and mod.start_dim != 1:
                    raise _unsupported(f"Flatten(start_dim={mod.start_dim}) (only start_dim 1)")
                (x,) = args
                name = add(node.target, copy.deepcopy(mod))
                env[node] = graph.call_module(name, (env[x],))
                source[node] = source[x]
            elif isinstance(mod, _IDENTITY):
                (x,) = args
                env[node], source[node] = env[x], source[x]
            else:
                raise _unsupported(f"module {node.target} ({type(mod).__name__})")
        elif _is_flatten_call(node):
            x = node.args[0]
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise _unsupported(f"flatten({start}, {end}) (only flatten(x, 1))")
            name = add(f"flatten_{node.name}", nn.Flatten(1))
            env[node] = graph.call_module(name, (env[x],))
            source[node] = source[x]
        else:
            raise _unsupported(f"{node.op} {node.target}")
    if not output_seen:
        raise _unsupported("a model without an output")
    graph.lint()
    student = QuantizedModel(fx.GraphModule(root, graph, class_name="QuantizedGraph"), config)
    student.train()
    if calibration is not None:
        student.calibrate(calibration, config.calibration_batches)
        if config.method == "ptq":
            student.freeze_observers()
        else:
            student.set_observer_mode("ema")
    return student


@dataclass(frozen=True)
class QOp:
    """One int8 operation of a student, in graph order, with where its inputs' qparams live.

    Attributes:
        kind: "input", "conv", "linear", "add", "maxpool", "avgpool", "flatten".
        name: the submodule name in the student's graph module.
        module: the submodule (QConv2d, QLinear, QAdd, QAvgPool, nn.MaxPool2d, nn.Flatten, ActFakeQuant).
        inputs: the names of the ops producing this op's inputs ("" for the model input).
        in_fq: the ActFakeQuant of each input.
        out_fq: the ActFakeQuant of the output (the input's for pass-through ops).
    """

    kind: str
    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    in_fq: tuple[ActFakeQuant, ...]
    out_fq: ActFakeQuant


def quantized_ops(student: QuantizedModel) -> Iterator[QOp]:
    """The student's int8 operations in execution order (what the exporter writes, one ONNX group each)."""
    gm = student.graph_module
    out_of: dict[str, ActFakeQuant] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        target = cast(str, node.target)  # a call_module node's target is the submodule's qualified name
        mod = gm.get_submodule(target)
        ins = tuple(cast(str, a.target) for a in node.args if isinstance(a, fx.Node) and a.op == "call_module")
        in_fq = tuple(out_of[i] for i in ins)
        if isinstance(mod, ActFakeQuant):
            kind, out = "input", mod
        elif isinstance(mod, QConv2d):
            kind, out = "conv", mod.out_fq
        elif isinstance(mod, QLinear):
            kind, out = "linear", mod.out_fq
        elif isinstance(mod, QAdd):
            kind, out = "add", mod.out_fq
        elif isinstance(mod, QAvgPool):
            kind, out = "avgpool", mod.out_fq
        elif isinstance(mod, nn.MaxPool2d):
            kind, out = "maxpool", in_fq[0]
        elif isinstance(mod, nn.Flatten):
            kind, out = "flatten", in_fq[0]
        else:  # pragma: no cover - prepare never creates anything else
            raise AssertionError(f"unexpected module {type(mod).__name__}")
        out_of[target] = out
        yield QOp(kind, target, mod, ins, in_fq, out)
