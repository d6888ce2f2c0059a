"""KnockoffNets (Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models",
CVPR 2019): query the victim with natural images from another distribution, then train a student on the
returned probability vectors with soft cross-entropy (never argmax labels).

Sampling policies:
- "random": images drawn without replacement from the surrogate set (a new permutation per pass when
  the budget exceeds the set; with the set's augmentation on, repeats are new random crops).
- "adaptive": the paper's gradient-bandit policy over the surrogate's classes (Sec. 4.1.2):
  π = softmax(H); pick class a ~ π, query a batch of its images, reward r; baseline r̄ = mean of past
  rewards; H(a) += lr·(r − r̄)·(1 − π(a)) and H(a') −= lr·(r − r̄)·π(a') for a' ≠ a. Rewards (batch means):
  cert = top-1 minus top-2 probability; div = Σ_k max(0, y_k − ȳ_k) with ȳ the mean answer over the last
  Δ batches; loss = soft cross-entropy of an online student (one SGD step per batch) against the
  answer; "all" = their sum (unnormalised; our choice, the public code never released the policy).
The final student is trained from scratch on the whole transfer set with the official schedule.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from divqat_tvm.attacks.losses import soft_cross_entropy
from divqat_tvm.attacks.progress import Progress, no_progress, report_step
from divqat_tvm.attacks.training import FitConfig, fit_student

POLICIES = ("random", "adaptive")
REWARDS = ("cert", "div", "loss", "all")


@dataclass(frozen=True)
class KnockoffConfig:
    """Options with the official defaults.

    Attributes:
        budget: queried images (official: transfer-set size, e.g. 50,000).
        policy: "random" or "adaptive".
        query_batch: images per victim call (official 8).
        reward: adaptive reward, one of cert, div, loss, all.
        bandit_lr: step size of the gradient bandit (ours: 0.1).
        div_window: Δ, batches in the diversity reward's running mean (ours: 25).
        fit: the student's training schedule (SGD 0.01, momentum 0.5, batch 64, 100 epochs, step at 60).
    """

    budget: int = 50_000
    policy: str = "random"
    query_batch: int = 8
    reward: str = "all"
    bandit_lr: float = 0.1
    div_window: int = 25
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be at least 1 query, but it is {self.budget}.")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, but it is {self.policy!r}.")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, but it is {self.reward!r}.")
        if self.query_batch < 1:
            raise ValueError(f"query_batch must be at least 1, but it is {self.query_batch}.")


def _images(dataset, idx: np.ndarray) -> np.ndarray:
    """Surrogate images (with the dataset's augmentation, if on) as float32 [n, C, H, W]."""
    return torch.stack([dataset[int(i)][0] for i in idx]).numpy()


def random_indices(n: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """`budget` indices into a set of `n`: permutations concatenated until the budget is met."""
    passes = -(-budget // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:budget]


def bandit_update(h: np.ndarray, action: int, reward: float, baseline: float, lr: float) -> np.ndarray:
    """One gradient-bandit step (Sutton & Barto 2.8) on preferences `h`."""
    pi = np.exp(h - h.max())
    pi /= pi.sum()
    one_hot = np.zeros_like(h)
    one_hot[action] = 1.0
    return h + lr * (reward - baseline) * (one_hot - pi)


def rewards(p: np.ndarray, recent: deque, student_logits: torch.Tensor) -> dict[str, float]:
    """The adaptive policy's three rewards for one answered batch (batch means)."""
    top2 = np.sort(p, axis=1)[:, -2:]
    cert = float((top2[:, 1] - top2[:, 0]).mean())
    mean_recent = np.mean(np.concatenate(list(recent)), axis=0) if recent else np.zeros(p.shape[1])
    div = float(np.maximum(0.0, p - mean_recent).sum(axis=1).mean())
    loss = float(soft_cross_entropy(student_logits, torch.from_numpy(p)))
    return {"cert": cert, "div": div, "loss": loss, "all": cert + div + loss}


def collect_random(oracle, surrogate, cfg: KnockoffConfig, rng: np.random.Generator, progress: Progress):
    """Random transfer set: list of (x, p) batches."""
    order = random_indices(len(surrogate), cfg.budget, rng)
    batches = []
    for i in range(0, cfg.budget, cfg.query_batch):
        x = _images(surrogate, order[i : i + cfg.query_batch])
        batches.append((x, oracle.query(x)))
        progress(oracle.queries, phase="query")
    return batches


def collect_adaptive(
    oracle, surrogate, student: nn.Module, cfg: KnockoffConfig, rng: np.random.Generator, progress: Progress
):
    """Adaptive transfer set via the gradient bandit; returns (batches, final class preferences)."""
    labels = surrogate.labels.numpy()
    classes = np.unique(labels)
    pools = {int(c): list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    h = np.zeros(len(classes))
    online = copy.deepcopy(student).train()
    opt = torch.optim.SGD(online.parameters(), lr=cfg.fit.lr, momentum=cfg.fit.momentum)
    recent: deque = deque(maxlen=cfg.div_window)
    history: list[float] = []
    batches = []
    while oracle.queries < cfg.budget:
        pi = np.exp(h - h.max())
        pi /= pi.sum()
        a = int(rng.choice(len(classes), p=pi))
        pool = pools[int(classes[a])]
        n = min(cfg.query_batch, cfg.budget - oracle.queries)
        while len(pool) < n:  # refill with a fresh permutation of the class
            pool.extend(rng.permutation(np.flatnonzero(labels == classes[a])))
        idx, pools[int(classes[a])] = np.array(pool[:n]), pool[n:]
        x = _images(surrogate, idx)
        p = oracle.query(x)
        batches.append((x, p))
        xt, pt = torch.from_numpy(x), torch.from_numpy(p)
        if len(x) > 1:
            logits = online(xt)
            r = rewards(p, recent, logits.detach())[cfg.reward]
            loss = soft_cross_entropy(logits, pt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            online.eval()
            with torch.no_grad():
                r = rewards(p, recent, online(xt))[cfg.reward]
            online.train()
        baseline = float(np.mean(history)) if history else 0.0
        h = bandit_update(h, a, r, baseline, cfg.bandit_lr)
        history.append(r)
        recent.append(p)
        progress(oracle.queries, loss=r, phase="query")
    return batches, h


def run_knockoff(
    oracle,
    student: nn.Module,
    surrogate,
    cfg: KnockoffConfig,
    seed: int = 0,
    evaluator=None,
    progress: Progress = no_progress,
    eval_every: int = 5,
) -> dict:
    """Steal `oracle` into `student` (trained in place). Uses only oracle.query/queries/num_classes.

    Returns:
        A dict of attack-specific facts (queries used, final loss, class preferences for adaptive).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    extra: dict = {}
    if cfg.policy == "random":
        batches = collect_random(oracle, surrogate, cfg, rng, progress)
    else:
        batches, h = collect_adaptive(oracle, surrogate, student, cfg, rng, progress)
        extra["class_preferences"] = h.round(4).tolist()
    x = np.concatenate([b[0] for b in batches])
    p = np.concatenate([b[1] for b in batches])

    def on_epoch(epoch: int, loss: float) -> None:
        report_step(progress, oracle.queries, loss, epoch + 1, cfg.fit.epochs, "train", eval_every, evaluator, student)

    final = fit_student(student, x, p, soft_cross_entropy, cfg.fit, seed=seed, on_epoch=on_epoch)
    return {"queries": int(oracle.queries), "final_loss": final, "transfer_set": int(len(x)), **extra}
