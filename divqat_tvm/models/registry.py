"""Models by name, and their MAC / parameter counts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from divqat_tvm.errors import DivqatError
from divqat_tvm.models.nets import DSCNN, ResNet8, TinyCNN, VGGSmall

_MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet8": ResNet8,
    "vgg": VGGSmall,
    "dscnn": DSCNN,
    "tinycnn": TinyCNN,
}


def model_names() -> list[str]:
    """The registered architecture names."""
    return list(_MODELS)


def build_model(name: str, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> nn.Module:
    """A freshly initialised model (torch's global RNG) that maps [N,C,S,S] images to [N,K] logits.

    Raises:
        DivqatError: unknown name or impossible sizes.
    """
    key = name.strip().lower()
    if key not in _MODELS:
        raise DivqatError(f"Unknown model {name!r}.", f"Use one of: {', '.join(_MODELS)}.")
    if in_channels < 1 or num_classes < 2 or input_size < 1:
        raise DivqatError(
            f"Model {key} needs in_channels >= 1, num_classes >= 2 and input_size >= 1 "
            f"(got {in_channels}, {num_classes}, {input_size}).",
            "Pass the dataset's input shape and class count.",
        )
    return _MODELS[key](in_channels, num_classes, input_size)


def count_macs_params(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """Multiply-accumulates of one inference (conv and linear layers) and the number of parameters.

    MACs are counted by forward hooks on every `nn.Conv2d` (out elements x in_channels/groups x kh x kw)
    and `nn.Linear` (out elements x in_features), for a single [C,H,W] input; batch norm folds away and
    pools/adds are not multiply-accumulates. Parameters are all of `model.parameters()` (BN's gamma and
    beta included, running statistics not).

    Args:
        model: any module; it is run once in eval mode under no_grad, its mode is restored.
        input_shape: (C, H, W) of one input.
    """
    macs = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        per_item = out[0].numel()
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs += per_item * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):  # the hook is only registered on Conv2d and Linear
            macs += per_item * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, dtype=p.dtype if p is not None else torch.float32)
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return int(macs), int(params)
