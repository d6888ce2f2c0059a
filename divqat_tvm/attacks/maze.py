"""MAZE (Kariyappa, Prakash, Qureshi, "MAZE: Data-Free Model Stealing Attack Using Zeroth-Order
Gradient Estimation", CVPR 2021): like DFME, a generator hunts for disagreement, but with KL, many
directions per gradient estimate, and experience replay of every answered batch.

Faithful to the official code (sanjaykariyappa/MAZE, src/attacks/maze.py and attack_utils.py), written
afresh:
- per iteration: iter_gen generator steps, iter_clone student steps, iter_exp replay steps;
- generator step: loss −KL(victim ‖ student) per sample at x = tanh(x_pre) and at ndirs points
  tanh(x_pre + μ·u) (u random unit directions per sample); ∇ ≈ Σ_u (d/ndirs)·(L(x+μu) − L(x))/μ · u,
  divided by the batch size, back-propagated from x_pre (student in train mode, as in the official code;
  the victim gets the (1 + ndirs)·N points in one call and the student sees them as one batch, so its
  BatchNorm statistics are the same for x and x + μu — the official code runs ndirs + 1 separate batches);
  μ is the official 1e-3 by default; against an int8 victim it must move pixels by about one 8-bit input
  level (μ ≈ 1 on MNIST), or the victim's answers do not change (`commands.epsilon_note`);
- student steps: KL(victim ‖ student) on fresh generator batches; the first reuses the generator
  step's batch AND its victim answers (the official comment says "reuse x"; it re-queries the same x,
  which its own cost formula does not count — reusing the answer makes the formula exact);
- experience replay: every iteration's last (x, answer) batch is stored; iter_exp student steps on
  random batches from the store (no queries);
- `generator_output` turns x_pre into a query: "tanh" (official), or with the victim's valid input range
  `pixel_low`/`pixel_high`, "tanh-range" or "clip" (see `generators.output_map`);
- cost per iteration = batch · ((iter_clone − 1) + (1 + ndirs) · iter_gen); iterations = ⌊budget / cost⌋;
- optimisers (opt "sgd", the default): SGD(momentum 0.9, wd 5e-4) for both, cosine over the iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from divqat_tvm.attacks.generators import Generator, check_config, data_free_facts, query_map
from divqat_tvm.attacks.losses import kl_divergence
from divqat_tvm.attacks.progress import Progress, no_progress, report_step


@dataclass(frozen=True)
class MAZEConfig:
    """Options with the official defaults (src/utils/config.py)."""

    budget: int = 5_000_000
    batch_size: int = 128
    latent_dim: int = 100
    ngf: int = 64
    lr_clone: float = 0.1
    lr_gen: float = 1e-4
    ndirs: int = 10
    mu: float = 1e-3
    iter_gen: int = 1
    iter_clone: int = 5
    iter_exp: int = 10
    opt: str = "sgd"
    generator_output: str = "tanh"
    pixel_low: tuple[float, ...] = ()
    pixel_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.iter_exp < 0:
            raise ValueError(f"iter_exp must be at least 0, but it is {self.iter_exp}.")
        if self.opt not in ("sgd", "adam"):
            raise ValueError(f"opt must be sgd or adam, but it is {self.opt!r}.")
        check_config(
            self,
            ("batch_size", "latent_dim", "ndirs", "iter_gen", "iter_clone"),
            "batch_size·((iter_clone−1)+(1+ndirs)·iter_gen)",
        )

    @property
    def cost_per_iteration(self) -> int:
        return self.batch_size * ((self.iter_clone - 1) + (1 + self.ndirs) * self.iter_gen)

    @property
    def iterations(self) -> int:
        return int(self.budget / self.cost_per_iteration)


def zoge_backward(
    oracle, student: nn.Module, x_pre: torch.Tensor, cfg: MAZEConfig, gen: torch.Generator
) -> tuple[float, np.ndarray]:
    """Zeroth-order gradient of −KL w.r.t. x_pre, back-propagated into the generator; one victim call of
    (1 + ndirs)·N images. Returns (generator loss, the victim's answers at the unperturbed x)."""
    n, shape = x_pre.shape[0], tuple(x_pre.shape[1:])
    d = int(np.prod(shape))
    with torch.no_grad():
        base = x_pre.detach()
        u = torch.randn(cfg.ndirs, *base.shape, generator=gen)
        u = u / u.view(cfg.ndirs, n, -1).norm(dim=2).view(cfg.ndirs, n, *([1] * len(shape)))
        points = query_map(cfg)(torch.cat([base[None], base[None] + cfg.mu * u]).view(-1, *shape))
        p = oracle.query(points.numpy())
        losses = -kl_divergence(student(points), torch.from_numpy(p), reduction="none").view(cfg.ndirs + 1, n)
        scale = (d / cfg.ndirs) * (losses[1:] - losses[0]) / cfg.mu
        grad = (scale.view(cfg.ndirs, n, *([1] * len(shape))) * u).sum(dim=0) / n
    x_pre.backward(grad)
    return float(losses[0].mean()), p[:n]


def run_maze(
    oracle,
    student: nn.Module,
    cfg: MAZEConfig,
    seed: int = 0,
    evaluator=None,
    progress: Progress = no_progress,
    eval_every: int = 10,
) -> dict:
    """Steal `oracle` into `student` (trained in place) with MAZE. Uses only oracle.query/queries/
    input_shape. Returns attack-specific facts (iterations, cost, replay size, last losses)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    generator = Generator(cfg.latent_dim, oracle.input_shape, cfg.ngf, final_affine=True)
    act = query_map(cfg)
    opt_s: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    if cfg.opt == "sgd":
        opt_s = torch.optim.SGD(student.parameters(), lr=cfg.lr_clone, momentum=0.9, weight_decay=5e-4)
        opt_g = torch.optim.SGD(generator.parameters(), lr=cfg.lr_gen, momentum=0.9, weight_decay=5e-4)
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, cfg.iterations) for o in (opt_s, opt_g)]
    else:
        opt_s = torch.optim.Adam(student.parameters(), lr=cfg.lr_clone)
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_gen)
        scheds = []
    replay_x: list[torch.Tensor] = []
    replay_p: list[torch.Tensor] = []
    loss_g = loss_s = float("nan")
    student.train()
    generator.train()
    for it in range(cfg.iterations):
        for _ in range(cfg.iter_gen):
            z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen)
            _, x_pre = generator(z)
            x = act(x_pre)
            opt_g.zero_grad()
            for q in student.parameters():
                q.requires_grad_(False)
            loss_g, p_x = zoge_backward(oracle, student, x_pre, cfg, gen)
            for q in student.parameters():
                q.requires_grad_(True)
            opt_g.step()
        for c in range(cfg.iter_clone):
            if c == 0:  # the last generator batch and its answers
                x, p = x.detach(), torch.from_numpy(p_x)
            else:
                with torch.no_grad():
                    x = act(generator(torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen))[1])
                p = torch.from_numpy(oracle.query(x.numpy()))
            loss = kl_divergence(student(x), p)
            opt_s.zero_grad()
            loss.backward()
            opt_s.step()
            loss_s = loss.item()
        replay_x.append(x)
        replay_p.append(p)
        if cfg.iter_exp > 0:
            xs, ps = torch.cat(replay_x), torch.cat(replay_p)
            perm = torch.randperm(len(xs), generator=gen)
            for e in range(cfg.iter_exp):
                idx = perm[(e * cfg.batch_size) % len(xs) :][: cfg.batch_size]
                if len(idx) < cfg.batch_size:
                    break
                loss = kl_divergence(student(xs[idx]), ps[idx])
                opt_s.zero_grad()
                loss.backward()
                opt_s.step()
        for s in scheds:
            s.step()
        report_step(progress, oracle.queries, loss_s, it + 1, cfg.iterations, "iter", eval_every, evaluator, student)
    student.eval()
    return {**data_free_facts(oracle, cfg, loss_s, loss_g), "replay_size": int(sum(len(x) for x in replay_x))}
