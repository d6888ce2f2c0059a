"""DFME (Truong, Maini, Walls, Papernot, "Data-Free Model Extraction", CVPR 2021): a generator searches
for inputs where student and victim disagree, the student learns the victim there. No data at all.

Faithful to the official code (cake-lab/datafree-model-extraction, dfme/train.py and
approximate_gradients.py), written afresh:
- per iteration: g_iter generator steps, then d_iter student steps, each on a fresh batch;
- student loss: L1 between the student's logits and the victim's logits approximated from the returned
  probabilities, log p minus its mean ("logit correction" mean);
- generator step: maximise that L1 through the black box with a forward-difference zeroth-order
  estimate: m random unit directions u in the pre-tanh image space, points tanh(x_pre + ε·u) and
  tanh(x_pre), ∇ ≈ d/ε · mean_u[(L(x + εu) − L(x)) u] / (K · N) with d = C·H·W; the student is in
  eval mode while estimating. ε is the official 1e-3 by default; against an int8 victim it must move pixels
  by about one 8-bit input level (ε ≈ 1 on MNIST), or the victim's answers do not change (`commands.epsilon_note`);
- `generator_output` turns x_pre into a query: "tanh" (official), or with the victim's valid input range
  `pixel_low`/`pixel_high`, "tanh-range" or "clip" (see `generators.output_map`);
- cost per iteration = batch · (g_iter · (m + 1) + d_iter); iterations = budget // cost (the official
  loop can overshoot by one iteration at an epoch boundary; we never exceed the budget);
- optimisers: student SGD(lr_S, momentum 0.9, wd 5e-4), generator Adam(lr_G); both lr × scale at
  steps × number_epochs, epochs of epoch_itrs iterations (number_epochs = budget // (cost·epoch_itrs) + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from divqat_tvm.attacks.generators import Generator, check_config, data_free_facts, query_map
from divqat_tvm.attacks.losses import approx_logits, l1_logits
from divqat_tvm.attacks.progress import Progress, no_progress, report_step


@dataclass(frozen=True)
class DFMEConfig:
    """Options with the official defaults (CIFAR-10 run script for lr_G)."""

    budget: int = 20_000_000
    batch_size: int = 256
    epoch_itrs: int = 50
    g_iter: int = 1
    d_iter: int = 5
    lr_S: float = 0.1
    lr_G: float = 5e-4
    nz: int = 256
    ngf: int = 64
    grad_m: int = 1
    grad_epsilon: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    steps: tuple[float, ...] = (0.1, 0.3, 0.5)
    scale: float = 0.3
    logit_correction: str = "mean"
    generator_output: str = "tanh"
    pixel_low: tuple[float, ...] = ()
    pixel_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_config(
            self,
            ("batch_size", "epoch_itrs", "g_iter", "d_iter", "grad_m", "nz"),
            "batch_size·(g_iter·(grad_m+1)+d_iter)",
        )
        if self.logit_correction not in ("mean", "min", "none"):
            raise ValueError(f"logit_correction must be mean, min or none, but it is {self.logit_correction!r}.")

    @property
    def cost_per_iteration(self) -> int:
        return self.batch_size * (self.g_iter * (self.grad_m + 1) + self.d_iter)

    @property
    def iterations(self) -> int:
        return self.budget // self.cost_per_iteration

    @property
    def number_epochs(self) -> int:
        return self.budget // (self.cost_per_iteration * self.epoch_itrs) + 1


def unit_directions(n: int, m: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """[n, m, *shape] directions uniform on the unit sphere of dimension prod(shape)."""
    u = torch.randn(n, m, int(np.prod(shape)), generator=gen)
    return (u / u.norm(dim=2, keepdim=True)).view(n, m, *shape)


def estimate_gradient(
    oracle, student: nn.Module, x_pre: torch.Tensor, cfg: DFMEConfig, gen: torch.Generator
) -> tuple[torch.Tensor, float]:
    """Forward-difference estimate of d(−L1)/d x_pre (the generator minimises −L1); one victim call of
    N·(m+1) images. Returns (gradient [N,C,H,W], generator loss at the unperturbed points)."""
    n, shape, m, eps = x_pre.shape[0], tuple(x_pre.shape[1:]), cfg.grad_m, cfg.grad_epsilon
    dim = int(np.prod(shape))
    was_training = student.training
    student.eval()
    with torch.no_grad():
        u = torch.cat([unit_directions(n, m, shape, gen), torch.zeros(n, 1, *shape)], dim=1)
        points = query_map(cfg)((x_pre.detach()[:, None] + eps * u).view(-1, *shape))
        t = approx_logits(torch.from_numpy(oracle.query(points.numpy())), cfg.logit_correction)
        values = -l1_logits(student(points), t, reduction="none").view(n, m + 1)
        diff = (values[:, :m] - values[:, m:]).view(n, m, *([1] * len(shape)))
        grad = (dim / eps * diff * u[:, :m]).mean(dim=1) / (oracle.num_classes * n)
    student.train(was_training)
    return grad, float(values[:, m].mean())


def run_dfme(
    oracle,
    student: nn.Module,
    cfg: DFMEConfig,
    seed: int = 0,
    evaluator=None,
    progress: Progress = no_progress,
    eval_every: int = 10,
) -> dict:
    """Steal `oracle` into `student` (trained in place) with DFME. Uses only oracle.query/queries/
    input_shape/num_classes. Returns attack-specific facts (iterations, cost, last losses)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    generator = Generator(cfg.nz, oracle.input_shape, cfg.ngf)
    act = query_map(cfg)
    opt_s = torch.optim.SGD(student.parameters(), lr=cfg.lr_S, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_G)
    milestones = sorted(int(s * cfg.number_epochs) for s in cfg.steps)
    sched = [torch.optim.lr_scheduler.MultiStepLR(o, milestones, cfg.scale) for o in (opt_s, opt_g)]
    loss_g = loss_s = float("nan")
    student.train()
    generator.train()
    for it in range(cfg.iterations):
        for _ in range(cfg.g_iter):
            z = torch.randn(cfg.batch_size, cfg.nz, generator=gen)
            _, x_pre = generator(z)
            grad, loss_g = estimate_gradient(oracle, student, x_pre, cfg, gen)
            opt_g.zero_grad()
            x_pre.backward(grad)
            opt_g.step()
        for _ in range(cfg.d_iter):
            z = torch.randn(cfg.batch_size, cfg.nz, generator=gen)
            with torch.no_grad():
                x = act(generator(z)[1])
            t = approx_logits(torch.from_numpy(oracle.query(x.numpy())), cfg.logit_correction)
            loss = l1_logits(student(x), t)
            opt_s.zero_grad()
            loss.backward()
            opt_s.step()
            loss_s = loss.item()
        if (it + 1) % cfg.epoch_itrs == 0:
            for s in sched:
                s.step()
        report_step(progress, oracle.queries, loss_s, it + 1, cfg.iterations, "iter", eval_every, evaluator, student)
    student.eval()
    return data_free_facts(oracle, cfg, loss_s, loss_g)
