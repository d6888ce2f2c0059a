"""`divqat-tvm attack`: steal a victim through any backend, or replay a query log offline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer

from divqat_tvm.errors import DivqatError

DEFAULT_BUDGETS = {"knockoff": 50_000, "dfme": 20_000_000, "maze": 5_000_000}


def register(app: typer.Typer) -> None:
    """Add the `attack` command to the CLI."""
    app.command("attack")(attack_command)


def _load_split(name: str, split: str, data_dir: Optional[Path], augment: bool, normalization=None):
    from divqat_tvm.train.splits import load_split

    return load_split(name, split, data_dir=data_dir, augment=augment, normalization=normalization)


def build_config(attack: str, budget: int, o: dict):
    """The attack's config from CLI options; unset options keep the official defaults."""
    from divqat_tvm.attacks import DFMEConfig, FitConfig, KnockoffConfig, MAZEConfig

    def pick(**kw):
        return {k: v for k, v in kw.items() if v is not None}

    try:
        if attack == "knockoff":
            epochs = o["epochs"] if o["epochs"] is not None else FitConfig.epochs
            lr_step = o["lr_step"] if o["lr_step"] is not None else max(1, round(0.6 * epochs))  # official 60 of 100
            fit = FitConfig(
                **pick(epochs=epochs, batch_size=o["fit_batch"], lr=o["lr"], momentum=o["momentum"], lr_step=lr_step)
            )
            return KnockoffConfig(
                **pick(budget=budget, policy=o["policy"], query_batch=o["batch_size"], reward=o["reward"], fit=fit)
            )
        if attack == "dfme":
            return DFMEConfig(
                **pick(
                    budget=budget,
                    batch_size=o["batch_size"],
                    epoch_itrs=o["epoch_itrs"],
                    g_iter=o["g_iter"],
                    d_iter=o["d_iter"],
                    lr_S=o["lr"],
                    lr_G=o["lr_gen"],
                    nz=o["latent_dim"],
                    ngf=o["ngf"],
                    grad_m=o["ndirs"],
                    grad_epsilon=o["epsilon"],
                    generator_output=o["generator_output"],
                    pixel_low=o["pixel_low"],
                    pixel_high=o["pixel_high"],
                )
            )
        if attack == "maze":
            return MAZEConfig(
                **pick(
                    budget=budget,
                    batch_size=o["batch_size"],
                    latent_dim=o["latent_dim"],
                    lr_clone=o["lr"],
                    lr_gen=o["lr_gen"],
                    ngf=o["ngf"],
                    ndirs=o["ndirs"],
                    mu=o["epsilon"],
                    iter_gen=o["g_iter"],
                    iter_clone=o["d_iter"],
                    iter_exp=o["iter_exp"],
                    generator_output=o["generator_output"],
                    pixel_low=o["pixel_low"],
                    pixel_high=o["pixel_high"],
                )
            )
    except ValueError as e:
        raise DivqatError(f"Invalid {attack} options: {e}", "Fix the option named above.") from None
    raise DivqatError(f"Unknown attack {attack!r}.", "Use --attack knockoff, dfme or maze.")


#: --generator-range → the attack configs' generator_output.
GENERATOR_RANGES = {"tanh": "tanh", "pixels": "tanh-range", "clip": "clip"}


def _pixel_bounds(mode: str, norm: dict) -> dict:
    """The generator's output map and the victim's valid input range: the normalised images of pixel values
    0 and 1 (none for the official tanh)."""
    from divqat_tvm.attacks.generators import pixel_range

    if mode not in GENERATOR_RANGES:
        raise DivqatError(f"Unknown --generator-range {mode!r}.", f"Use {', '.join(GENERATOR_RANGES)}.")
    if mode == "tanh":
        return {"generator_output": "tanh", "pixel_low": None, "pixel_high": None}
    return {"generator_output": GENERATOR_RANGES[mode], **pixel_range(norm)}


def epsilon_note(eps: float, int8_victim: bool, input_shape: tuple[int, ...], std: list[float]) -> str | None:
    """A warning when a zeroth-order step is too small to be seen through an int8 victim's input, else None.

    A unit direction in d = C·H·W dimensions moves each pixel by about eps/√d; the victim rounds its input to
    8-bit levels of 1/(255·std) after normalisation. Below one level its answers rarely change, and when they
    do it is by a whole output step, so the finite differences are noise (tests/attacks/test_attacks_steal.py).
    """
    from divqat_tvm.attacks.generators import pixel_move_in_levels

    if not int8_victim or pixel_move_in_levels(eps, input_shape, std) >= 1.0:
        return None
    root_d, level = math.sqrt(math.prod(input_shape)), 1.0 / (255.0 * max(std))
    return (
        f"--epsilon {eps:g} moves each pixel by about {eps / root_d:.1e}, less than one 8-bit input level of this int8 victim "
        f"({level:.4f} after its normalisation): its answers rarely change and the zeroth-order gradient is mostly noise. "
        f"--epsilon {math.ceil(level * root_d * 10) / 10:g} or more moves pixels by a level (the quick profile uses 1; README, "
        '"Data-free attacks against an int8 victim").'
    )


def input_normalization(victim: Optional[str], info) -> dict:
    """The normalisation the victim expects (from its checkpoint or manifest), else the test set's own.

    A deployed model fixes its input format (e.g. MLPerf Tiny's ResNet-8 takes raw pixels), so the attacker's
    images and the test images are normalised the victim's way, not the dataset's.
    """
    from divqat_tvm.oracle import victim_meta

    norm = victim_meta(victim).get("normalization") if victim else None
    if not norm:
        return {"mean": list(info.mean), "std": list(info.std)}
    c = info.input_shape[0]
    mean, std = list(norm["mean"]), list(norm["std"])
    return {"mean": mean * c if len(mean) == 1 else mean, "std": std * c if len(std) == 1 else std}


def _tqdm_progress(total: int, desc: str, show: bool = True):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="q", dynamic_ncols=True, disable=not show)
    state: dict[str, float | None] = {"acc": None}

    def progress(queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = "") -> None:
        bar.n = min(queries, total)
        if accuracy is not None:
            state["acc"] = accuracy
        post = {"phase": phase}
        if loss is not None:
            post["loss"] = f"{loss:.4f}"
        if state["acc"] is not None:
            post["stolen_acc"] = f"{100 * state['acc']:.1f}%"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    return bar, progress


def _evaluator(victim: Optional[str], defense: Optional[str], test_set: str, data_dir: Optional[Path], norm: dict):
    """Test set + the victim's top-1 from a separate, uncounted evaluation oracle (None without a victim)."""
    import torch

    from divqat_tvm.attacks.metrics import Evaluator, victim_top1
    from divqat_tvm.oracle import open_oracle

    x, y = _load_split(test_set, "test", data_dir, augment=False, normalization=norm).tensors()
    if victim is None:
        return Evaluator(x, y, torch.full_like(y, -1), "no victim given: fidelity not measured"), x
    with open_oracle(victim, defense=defense) as ev:
        pred = torch.from_numpy(victim_top1(ev, x).astype("int64"))
    ref = f"top-1 of {victim} (defence {defense or 'none'}) on the {len(x)} {test_set} test images, through a separate evaluation oracle whose queries are not counted in the attack's budget"
    return Evaluator(x, y, pred, ref), x


def attack_command(
    attack: Optional[str] = typer.Option(None, "--attack", help="knockoff | dfme | maze"),
    victim: Optional[str] = typer.Option(
        None, "--victim", help="BACKEND:PATH, e.g. torch:runs/v.pt, tvm-host:build/m, qemu:build/m@mps2-an386"
    ),
    budget: Optional[int] = typer.Option(
        None, "--budget", help="queried images (default: official — knockoff 50k, dfme 20M, maze 5M)"
    ),
    student: str = typer.Option("tinycnn", "--student", help="attacker's model: any registry architecture (float)"),
    surrogate: str = typer.Option(
        "digits20",
        "--surrogate",
        help="KnockoffNets' natural surrogate dataset (digits20: sklearn digits framed like MNIST; mnist5k@attacker: in-distribution, the half of MNIST-5k's training split a mnist5k@victim victim never saw)",
    ),
    test_set: str = typer.Option("mnist5k", "--test-set", help="the victim's test set (stolen accuracy, fidelity)"),
    defense: Optional[str] = typer.Option(None, "--defense", help='e.g. "rs:beta=0.5,gamma=0.1" or "dcp:beta=0.5"'),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="run folder: queries.qlog, student.pt, result.json; resumes if a log exists"
    ),
    replay: Optional[Path] = typer.Option(
        None, "--replay", help="train a new student from this query log, without querying"
    ),
    policy: Optional[str] = typer.Option(None, "--policy", help="knockoff: random | adaptive (default random)"),
    reward: Optional[str] = typer.Option(None, "--reward", help="knockoff adaptive reward: cert | div | loss | all"),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="images per victim call (official: knockoff 8, dfme 256, maze 128)"
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="knockoff / replay: student epochs (official 100)"),
    fit_batch: Optional[int] = typer.Option(None, "--fit-batch", help="knockoff / replay: student batch (official 64)"),
    lr_step: Optional[int] = typer.Option(
        None, "--lr-step", help="knockoff / replay: epoch of the ×0.1 lr step (default 60 % of epochs)"
    ),
    lr: Optional[float] = typer.Option(None, "--lr", help="student lr (official: knockoff 0.01, dfme 0.1, maze 0.1)"),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="knockoff student momentum (official 0.5)"),
    lr_gen: Optional[float] = typer.Option(None, "--lr-gen", help="generator lr (official: dfme 5e-4, maze 1e-4)"),
    latent_dim: Optional[int] = typer.Option(
        None, "--latent-dim", help="generator latent size (official: dfme 256, maze 100)"
    ),
    ngf: Optional[int] = typer.Option(None, "--ngf", help="generator width (official 64)"),
    ndirs: Optional[int] = typer.Option(None, "--ndirs", help="zeroth-order directions (official: dfme m=1, maze 10)"),
    epsilon: Optional[float] = typer.Option(
        None,
        "--epsilon",
        help="finite-difference step (official 1e-3; an int8 victim needs about 1: a warning says when it is too small)",
    ),
    g_iter: Optional[int] = typer.Option(None, "--g-iter", help="generator steps per iteration (official 1)"),
    d_iter: Optional[int] = typer.Option(
        None, "--d-iter", help="student steps per iteration (official: dfme 5, maze iter_clone 5)"
    ),
    epoch_itrs: Optional[int] = typer.Option(
        None, "--epoch-itrs", help="dfme iterations per lr-schedule epoch (official 50)"
    ),
    iter_exp: Optional[int] = typer.Option(
        None, "--iter-exp", help="maze experience-replay steps per iteration (official 10)"
    ),
    generator_range: str = typer.Option(
        "clip",
        "--generator-range",
        help="dfme/maze query images: 'clip' clips the generator's BatchNorm output to the valid pixels [0, 1] after the victim's normalisation (data-like statistics); 'pixels' maps tanh onto them; 'tanh' feeds [-1, 1] as the official code",
    ),
    log_inputs: bool = typer.Option(
        True,
        "--log-inputs/--no-log-inputs",
        help="keep every query image in OUT/queries.qlog (needed for --replay); --no-log-inputs keeps only the answers and a fingerprint per query: enough to resume, ~30x smaller on MNIST",
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="dataset root for CIFAR/SVHN"),
    threads: int = typer.Option(
        1,
        "--threads",
        help="torch threads outside the attack's numerics (the attack and its student always run on 1 thread, so any count gives the same log and student)",
    ),
    devices: Optional[int] = typer.Option(
        None,
        "--devices",
        min=1,
        help="qemu victims: emulators answering each batch together, in order (default 2); the answers and the query log are those of one",
    ),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="where --devices run: local (child processes) or ray (Ray actors; $RAY_ADDRESS or a private cluster; needs the divqat-tvm\\[cluster] extra)",
    ),
    show_progress: bool = typer.Option(
        True, "--progress/--no-progress", help="show a progress bar with queries, loss and stolen accuracy"
    ),
    host_build: str = typer.Option(
        "auto",
        "--host-build",
        help="tvm-host victims: auto (the fastest exact build: native SIMD where the host has it) | native | portable (the plain C build); same answers",
    ),
    oracle_threads: int = typer.Option(
        1,
        "--oracle-threads",
        min=1,
        help="tvm-host victims: threads a query batch is split over (answers in order, the same bytes as one thread)",
    ),
) -> None:
    """Steal a victim (KnockoffNets, DFME or MAZE) through its query interface, or replay a query log.

    Queries and answers are logged to OUT/queries.qlog as they happen; running the same command again
    resumes without re-querying. Students always learn from the returned probabilities, never argmax.
    """
    import torch

    from divqat_tvm.attacks import replay_log, run_attack
    from divqat_tvm.attacks.training import FitConfig
    from divqat_tvm.fileio import atomic_write, atomic_write_json
    from divqat_tvm.models import build_model
    from divqat_tvm.oracle import open_oracle
    from divqat_tvm.train.splits import base_info

    torch.set_num_threads(threads)
    info = base_info(test_set)
    norm = input_normalization(victim, info)
    c, h, _ = info.input_shape
    torch.manual_seed(seed)
    model = build_model(student, c, info.num_classes, h)
    if replay is not None:
        from divqat_tvm.attacks import QueryLog

        QueryLog.read(replay)  # a missing or corrupt log is one line before any progress bar
        evaluator, _ = _evaluator(victim, defense, test_set, data_dir, norm)
        e = epochs if epochs is not None else FitConfig.epochs
        given: dict[str, Any] = dict(
            epochs=e,
            batch_size=fit_batch,
            lr=lr,
            momentum=momentum,
            lr_step=lr_step if lr_step is not None else max(1, round(0.6 * e)),
        )
        fit = FitConfig(**{k: v for k, v in given.items() if v is not None})
        from tqdm import tqdm

        bar = tqdm(
            total=fit.epochs, desc=f"replay {replay}", unit="epoch", dynamic_ncols=True, disable=not show_progress
        )

        def progress(queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = "") -> None:
            bar.update(1)
            bar.set_postfix(
                {
                    "queries": queries,
                    "loss": f"{loss:.4f}",
                    **({"stolen_acc": f"{100 * accuracy:.1f}%"} if accuracy is not None else {}),
                }
            )

        res = replay_log(replay, model, fit, seed=seed, evaluator=evaluator if victim else None, progress=progress)
        bar.close()
        if victim is None:
            res["stolen_accuracy"] = evaluator.accuracy(model)
        dest = out or replay.parent / "replay"
        atomic_write(Path(dest) / "student.pt", lambda f: torch.save(model.state_dict(), f))
        atomic_write_json(Path(dest) / "result.json", res)
        _print_summary(res, Path(dest) / "result.json")
        return
    if attack is None or victim is None or out is None:
        raise DivqatError(
            "An attack needs --attack, --victim and --out (or --replay LOG).",
            "Add the missing options; see divqat-tvm attack --help.",
        )
    _check_devices(victim, devices, executor)
    attack = attack.lower()
    if attack not in DEFAULT_BUDGETS:
        raise DivqatError(f"Unknown attack {attack!r}.", "Use --attack knockoff, dfme or maze.")
    cfg = build_config(
        attack,
        budget if budget is not None else DEFAULT_BUDGETS[attack],
        dict(
            policy=policy,
            reward=reward,
            batch_size=batch_size,
            epochs=epochs,
            fit_batch=fit_batch,
            lr_step=lr_step,
            lr=lr,
            momentum=momentum,
            lr_gen=lr_gen,
            latent_dim=latent_dim,
            ngf=ngf,
            ndirs=ndirs,
            epsilon=epsilon,
            g_iter=g_iter,
            d_iter=d_iter,
            epoch_itrs=epoch_itrs,
            iter_exp=iter_exp,
            **_pixel_bounds(generator_range, norm),
        ),
    )
    if attack in ("dfme", "maze"):
        from divqat_tvm.oracle import victim_meta
        from divqat_tvm.oracle.factory import parse_backend_spec

        int8 = parse_backend_spec(victim).kind != "torch" or victim_meta(victim).get("method", "float") != "float"
        note = epsilon_note(cfg.grad_epsilon if attack == "dfme" else cfg.mu, int8, info.input_shape, norm["std"])
        if note:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]warning:[/yellow] {note}")
    evaluator, _ = _evaluator(victim, defense, test_set, data_dir, norm)
    sur = None
    if attack == "knockoff":
        sur = _load_split(surrogate, "train", data_dir, augment=True, normalization=norm)
    describe = {
        "victim": victim,
        "defense": defense or "none",
        "student_arch": student,
        "test_set": test_set,
        "surrogate": surrogate if attack == "knockoff" else None,
    }
    bar, progress = _tqdm_progress(cfg.budget, f"{attack} → {victim}", show_progress)
    with open_oracle(
        victim,
        defense=defense,
        budget=cfg.budget,
        devices=devices,
        executor=executor,
        host_build=host_build,
        threads=oracle_threads,
    ) as oracle:
        if hasattr(oracle, "build_info"):
            print(f"tvm-host build: {oracle.build_info}")
        try:
            res = run_attack(
                attack,
                oracle,
                model,
                out,
                cfg,
                seed=seed,
                surrogate=sur,
                evaluator=evaluator,
                progress=progress,
                describe=describe,
                log_inputs=log_inputs,
            )
        finally:
            bar.close()
    _print_summary(res, Path(out) / "result.json")


def _check_devices(victim: str, devices: int | None, executor: str) -> None:
    """--devices/--executor: only for a qemu victim; ray must be installed (checked before any work)."""
    from divqat_tvm.oracle.factory import parse_backend_spec

    if executor not in ("local", "ray"):
        raise DivqatError(f"Unknown executor {executor!r}.", "Use --executor local or ray.")
    kind = parse_backend_spec(victim).kind
    if kind != "qemu" and ((devices or 1) > 1 or executor != "local"):
        raise DivqatError(
            f"--devices and --executor ray spread queries over emulators; the {kind} victim has none.",
            "Use a qemu:BUILD_DIR victim, or drop those options.",
        )
    if executor == "ray":
        from divqat_tvm.oracle.pool import import_ray

        import_ray("--executor ray")


def _print_summary(res: dict, path: Path) -> None:
    from rich.console import Console

    budget = res.get("budget", res.get("queries_in_log"))
    Console().print(
        f"[bold]{res.get('attack', 'replay')}[/bold] budget {budget:,} queries (used {res.get('queries_used', res.get('queries_in_log', 0)):,}): "
        f"stolen accuracy {100 * res.get('stolen_accuracy', float('nan')):.2f}%, fidelity {100 * res.get('fidelity', float('nan')):.2f}%"
        f" (victim {100 * res.get('victim_accuracy', float('nan')):.2f}%), {res.get('wall_time_s', 0):.1f} s → {path}"
    )
