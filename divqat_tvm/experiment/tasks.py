"""The real task function: each grid stage as calls into the other stages' public APIs.

teacher   → `train.train_teacher` on the victim's data; checkpoint cached by content.
model     → `train.make_student` (PTQ / QAT / DivQAT from the teacher) and `quant.export_onnx`; cached by content.
build     → the TVM compiler: ONNX → C build directory for the core (device backends and footprints only).
victim    → `oracle.open_oracle(spec, defense)` answers the whole test set once: victim accuracy and the
            victim's top-1 (the fidelity reference, never shown to the attacker).
footprint → instructions per inference, flash and RAM of the firmware with the victim's defence, under QEMU.
attack    → `attacks.runner.run_attack` against a budgeted oracle; its query log lives in the task's work
            directory, so a killed cell resumes from the answers it already paid for.

Every function takes (task, ctx) and returns the JSON-able dict the runner writes as the task's result.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.defenses.spec import DEFAULT_GAMMA, DEFAULT_NU
from divqat_tvm.errors import DeviceError, DivqatError
from divqat_tvm.experiment.cache import ensure
from divqat_tvm.experiment.grid import Task
from divqat_tvm.experiment.scheduler import TaskContext
from divqat_tvm.fileio import atomic_write_bytes

#: bump when what a cached artefact contains changes meaning (forces a rebuild under a new hash)
ARTEFACT_VERSION = 1


def run_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Dispatch on the task's stage (the runner's `fn_spec` is "divqat_tvm.experiment.tasks:run_task")."""
    import torch

    from divqat_tvm.train.determinism import derive_seed, seed_everything

    torch.set_num_threads(ctx.threads)  # the numerics themselves run on a fixed thread count (train.determinism)
    # every task starts from RNG state that is a function of its own key, never of what ran before it in this
    # worker: training tasks from their victim seed, attack cells from their attack seed (shared by the victims
    # they compare, so a seed draws the same queries against each), the rest from their key
    seed_everything(int(task.params["seed"]) if "seed" in task.params else derive_seed(task.key))
    fn = {
        "teacher": teacher_task,
        "model": model_task,
        "build": build_task,
        "victim": victim_task,
        "footprint": footprint_task,
        "attack": attack_task,
    }.get(task.stage)
    if fn is None:
        raise DivqatError(
            f"No pipeline step for the stage {task.stage!r}.", "Use the stages of divqat_tvm.experiment.grid."
        )
    return fn(task, ctx)


# ---------------------------------------------------------------- helpers


def _fields(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """The entries of `params` that are fields of the dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in params.items() if k in names}


def _split(name: str, split: str, data_dir: str | None, augment: bool = False, normalization: Any = None):
    from divqat_tvm.train.splits import load_split

    return load_split(name, split, data_dir, augment=augment, normalization=normalization)


def dataset_info(name: str):
    """The `DatasetInfo` of a dataset name, also of a partition such as "mnist5k@victim"."""
    from divqat_tvm.train.splits import base_info

    return base_info(name)


def _test_tensors(name: str, data_dir: str | None):
    ds = _split(name, "test", data_dir)
    x, y = ds.tensors()
    return x, y


def _meta(info: Any, arch: str, ds: Any) -> dict[str, Any]:
    return {
        "arch": arch,
        "dataset": info.name,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "normalization": {"mean": list(ds.mean), "std": list(ds.std)},
    }


def _train_config(params: dict[str, Any], seed: int):
    from divqat_tvm.train.loop import TrainConfig

    # device: "auto" (CUDA when present) unless the profile says otherwise; the bars would garble the display
    return TrainConfig(**{**_fields(TrainConfig, params), "seed": seed, "progress": False})


# ---------------------------------------------------------------- stages


def teacher_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Train (or reuse) the float teacher of a dataset and architecture."""
    import torch

    from divqat_tvm.models import build_model
    from divqat_tvm.train.checkpoint import save_checkpoint
    from divqat_tvm.train.metrics import accuracy, predict_logits
    from divqat_tvm.train.recipes import train_teacher

    p = task.params
    info = dataset_info(p["dataset"])
    key = {
        "v": ARTEFACT_VERSION,
        "dataset": p["dataset"] if "@" in p["dataset"] else info.name,
        "arch": p["arch"],
        "seed": p["seed"],
        "train": p["train"],
    }

    def build(d: Path) -> dict[str, Any]:
        ctx.report(0.0, f"training the {p['arch']} teacher on {info.name}")
        train = _split(p["dataset"], "train", p["data_dir"], augment=True)
        torch.manual_seed(p["seed"])
        c, h, _ = info.input_shape
        model = build_model(p["arch"], c, info.num_classes, h)
        history = train_teacher(
            model, train, _train_config(p["train"], p["seed"]), resume_path=ctx.work_dir / "teacher.resume"
        )
        x, y = _test_tensors(info.name, p["data_dir"])
        acc = accuracy(predict_logits(model, x), y)
        save_checkpoint(
            d / "teacher.pt",
            model,
            {
                **_meta(info, p["arch"], train),
                "dataset": p["dataset"],
                "method": "float",
                "metrics": {"test_accuracy": acc},
            },
        )
        return {"accuracy": acc, "history": history}

    d, art = ensure(ctx.cache_dir, "teacher", task.id, key, build)
    return {"checkpoint": str(d / "teacher.pt"), "accuracy": art["accuracy"], "artefact": str(d), "hash": d.name}


def model_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """The deployed model of a victim: the teacher itself (float) or its int8 student, exported and compiled."""
    p = task.params
    teacher = ctx.dep(*task.deps[0])
    if p["method"] == "float":
        return {"checkpoint": teacher["checkpoint"], "accuracy": teacher["accuracy"], "onnx": None, "build": None}
    key = {
        "v": ARTEFACT_VERSION,
        "teacher": teacher["hash"],
        "method": p["method"],
        "alpha": p["alpha"],
        "seed": p["seed"],
        "quantize": p["quantize"],
        **({"objective": p["objective"]} if "objective" in p else {}),
    }

    def build(d: Path) -> dict[str, Any]:
        import torch

        from divqat_tvm.quant.config import DivQATConfig, QuantConfig
        from divqat_tvm.quant.export import export_onnx
        from divqat_tvm.train.checkpoint import load_checkpoint, save_checkpoint
        from divqat_tvm.train.metrics import accuracy, predict_logits
        from divqat_tvm.train.recipes import make_student

        info = dataset_info(p["dataset"])
        ctx.report(0.0, f"{p['method']} student" + (f" α={p['alpha']:g}" if p["alpha"] is not None else ""))
        t_model, t_meta = load_checkpoint(teacher["checkpoint"], kind="float")
        train = _split(p["dataset"], "train", p["data_dir"], augment=True)
        q = p["quantize"]
        quant = QuantConfig(**{**_fields(QuantConfig, q), "method": p["method"]})
        div = (
            DivQATConfig(**{**_fields(DivQATConfig, q), "alpha": p["alpha"], "objective": p.get("objective", "paper")})
            if p["method"] == "divqat"
            else None
        )
        torch.manual_seed(p["seed"])
        student, history = make_student(
            t_model, train, quant, _train_config(q, p["seed"]), div, resume_path=ctx.work_dir / "student.resume"
        )
        student.eval()
        x, y = _test_tensors(info.name, p["data_dir"])
        acc = accuracy(predict_logits(student, x), y)
        meta = {
            **{k: t_meta[k] for k in ("arch", "dataset", "input_shape", "num_classes", "normalization")},
            "method": p["method"],
            "alpha": p["alpha"],
            "kl_direction": div.kl_direction if div else None,
            "kl_cap": div.kl_cap if div else None,
            "objective": div.objective if div else None,
            "metrics": {"test_accuracy": acc, "teacher_test_accuracy": teacher["accuracy"]},
        }
        save_checkpoint(d / "model.pt", student, meta)
        c, h, w = info.input_shape
        export_onnx(student, d / "model.onnx", (c, h, w), meta)
        return {"accuracy": acc, "history": history}

    d, art = ensure(ctx.cache_dir, "model", task.id, key, build)
    return {
        "checkpoint": str(d / "model.pt"),
        "onnx": str(d / "model.onnx"),
        "accuracy": art["accuracy"],
        "artefact": str(d),
        "hash": d.name,
    }


def build_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Compile the model's ONNX into a C build directory for the board's core (cached by model and target).

    Uses the compiler's front door, so the build is exactly what `divqat-tvm compile --target
    BOARD` writes (manifest, C library, the fit check against the board's flash and RAM).
    """
    from divqat_tvm.compiler.api import compile_model

    model = ctx.dep(*task.deps[0])
    spec = task.params
    key = {
        "v": ARTEFACT_VERSION,
        "model": model["hash"],
        "target": spec["board"],
        "core": spec["core"],
        "compiler": source_digest("divqat_tvm.compiler"),
    }

    def build(d: Path) -> dict[str, Any]:
        ctx.report(0.3, f"compiling with TVM for {spec['board']}")
        manifest = compile_model(Path(model["onnx"]), spec["board"], d / "build").manifest
        if manifest.get("core") != spec["core"]:
            raise DivqatError(
                f"The board {spec['board']} has the core {manifest.get('core')}, not {spec['core']}.",
                "Make [oracle] core and board agree (see `divqat-tvm targets`).",
            )
        return {k: manifest.get(k) for k in ("target", "core", "macs", "arena_bytes", "weight_bytes", "tvm_version")}

    d, info = ensure(ctx.cache_dir, "build", task.id, key, build)
    return {"build": str(d / "build"), **info}


def source_digest(package: str) -> str:
    """A hash of a package's Python sources: a changed compiler makes a new build, never reuses a stale one."""
    import hashlib
    import importlib

    init = importlib.import_module(package).__file__
    if init is None:
        raise DivqatError(
            f"the package {package} has no source files to hash (a namespace package?).",
            "Reinstall divqat-tvm (pip install -e . in a clone).",
        )
    root = Path(init).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _oracle_spec(backend: str, model: dict[str, Any], build: dict[str, Any] | None, board: str) -> str:
    if backend == "torch":
        return f"torch:{model['checkpoint']}"
    if build is None:
        raise DivqatError(
            f"The {backend} backend needs a compiled build, but the victim has none.",
            "Re-run the experiment: device backends compile every quantized victim first.",
        )
    return f"qemu:{build['build']}@{board}" if backend == "qemu" else f"{backend}:{build['build']}"


def _dep_of(task: Task, stage: str, task_id: str | None = None) -> tuple[str, str] | None:
    """The (stage, id) of the dependency of `stage` (and `task_id`, if given), None if the task has none."""
    return next((d for d in task.deps if d[0] == stage and (task_id is None or d[1] == task_id)), None)


def victim_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Victim accuracy through the deployed path (backend + defence), its top-1 on the test set, and how far its
    answers are from the reference models' (the x axis of the trade-off plots).

    Besides accuracy it records, on the whole test set: the mean L1 distance of the returned probability
    vectors from the undefended QAT model's of the same victim seed (`l1_vs_qat`: 0 for QAT itself; DivQAT's
    shift, a defence's perturbation, or both), from the same model without its defence (`l1_vs_undefended`),
    and from the float teacher's (`l1_vs_teacher`); and the top-1 agreement with the teacher and with QAT.
    """
    from divqat_tvm.oracle import open_oracle
    from divqat_tvm.train.determinism import fixed_threads

    p = task.params
    refs = p.get("refs", {})
    model = ctx.dep("model", _dep_of(task, "model", task.deps[0][1])[1])  # type: ignore[index]
    bdep = _dep_of(task, "build", task.deps[0][1])
    build = ctx.dep(*bdep) if bdep is not None else None
    v = p["victim"]
    spec = _oracle_spec(p["backend"], model, build, p["board"])
    x, y = _test_tensors(p["dataset"], p["data_dir"])
    ctx.report(0.0, f"answering {len(x)} test images via {p['backend']}")
    xs = x.numpy()

    def answers(oracle_spec: str, defense: str | None) -> np.ndarray:
        probs = []
        with fixed_threads(), open_oracle(oracle_spec, defense=defense) as oracle:
            for i in range(0, len(xs), 250):
                probs.append(oracle.query(xs[i : i + 250]))
                ctx.report(min(1.0, (i + 250) / len(xs)), "test set")
        return np.concatenate(probs)

    prob, _ = with_device_retries(lambda: answers(spec, _defense(v)), ctx)
    top1 = prob.argmax(1).astype(np.int16)
    path = ctx.out_dir / task.stage / f"{task.id}.top1.npy"
    atomic_write_bytes(path, _npy(top1))
    acc = float((top1 == y.numpy()).mean())
    l1 = lambda a, b: float(np.abs(a.astype(np.float64) - b.astype(np.float64)).sum(1).mean())  # noqa: E731
    extra: dict[str, Any] = {}
    if _defense(v) is not None:
        undefended, _ = with_device_retries(lambda: answers(spec, None), ctx)
        extra["l1_vs_undefended"] = l1(prob, undefended)
    else:
        undefended = prob
        extra["l1_vs_undefended"] = 0.0
    if "teacher" in refs:
        t = answers(f"torch:{ctx.dep('teacher', refs['teacher'])['checkpoint']}", None)
        extra["l1_vs_teacher"] = l1(prob, t)
        extra["agreement_with_teacher"] = float((top1 == t.argmax(1)).mean())
        extra["undefended_agreement_with_teacher"] = float((undefended.argmax(1) == t.argmax(1)).mean())
    if "qat_model" in refs:
        qm = ctx.dep("model", refs["qat_model"])
        qb = _dep_of(task, "build", refs["qat_model"])
        q, _ = with_device_retries(
            lambda: answers(_oracle_spec(p["backend"], qm, ctx.dep(*qb) if qb else None, p["board"]), None), ctx
        )
        extra["l1_vs_qat"] = l1(prob, q)
        extra["agreement_with_qat"] = float((top1 == q.argmax(1)).mean())
    return {
        "accuracy": acc,
        "model_accuracy_torch": model["accuracy"],
        "backend": p["backend"],
        "oracle": spec,
        "defense": _defense(v),
        "test_images": int(len(x)),
        "top1": str(path),
        "mean_top_probability": float(prob.max(1).mean()),
        **extra,
    }


def _defense(v: dict[str, Any]) -> str | None:
    """The contract's defence spec string of a victim dict (see `VictimSpec.defense_spec`)."""
    from divqat_tvm.experiment.config import VictimSpec

    return VictimSpec(
        v["method"], v["alpha"], v["defense"], v["beta"], v.get("gamma", DEFAULT_GAMMA), v.get("nu", DEFAULT_NU)
    ).defense_spec


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def footprint_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Instructions per inference (emulated), flash and RAM of the victim's firmware with its defence."""
    from divqat_tvm.device.footprint import measure_footprint

    p = task.params
    build = ctx.dep(*task.deps[0])
    ctx.report(0.0, f"building and measuring the firmware on {p['board']}")
    return footprint_figures(measure_footprint(build["build"], p["board"], _defense(p["victim"])))


def footprint_figures(f: dict[str, Any]) -> dict[str, Any]:
    """The figures the report prints, from the firmware stage's footprint JSON (kept whole under `raw`).

    Per inference: the model, the on-device softmax + defence, and their total, in the unit the device
    measured (`instructions (emulated)` under QEMU); flash and RAM of the image; the measured stack peak.
    """
    m = f.get("measured") or {}
    mean = lambda k: (m.get(k) or {}).get("mean")  # noqa: E731
    return {
        "instructions_per_inference": m.get("total_per_inference"),
        "model_per_inference": mean("model_per_inference"),
        "postprocess_per_inference": mean("postprocess_per_inference"),
        "unit": m.get("unit"),
        "flash_bytes": f.get("flash_bytes"),
        "ram_bytes": f.get("ram_bytes"),
        "stack_bytes": m.get("stack_peak_bytes"),
        "board": f.get("board"),
        "core": f.get("core"),
        "defense": f.get("defense"),
        "raw": f,
    }


#: how often a task retries after a device error (a frame time-out under host load, an emulator crash)
DEVICE_RETRIES = 3


def with_device_retries(fn: Callable[[], Any], ctx: TaskContext, retries: int = DEVICE_RETRIES) -> tuple[Any, int]:
    """Run `fn`, re-running it after a `DeviceError` up to `retries` times; returns (result, retries used).

    Safe for attacks because their query log replays every answered batch without asking the device again.
    """
    for i in range(retries + 1):
        try:
            return fn(), i
        except DeviceError as e:
            if i == retries:
                raise
            ctx.report(None, f"device error, retrying ({i + 1}/{retries}): {e.problem[:60]}")
    raise AssertionError("unreachable")


def attack_config(attack: str, params: dict[str, Any]):
    """The attack's config dataclass from profile parameters (a nested `fit` table for KnockoffNets).

    Raises:
        DivqatError: an option the attack does not have, or a value it rejects.
    """
    from divqat_tvm.attacks.dfme import DFMEConfig
    from divqat_tvm.attacks.knockoff import KnockoffConfig
    from divqat_tvm.attacks.maze import MAZEConfig
    from divqat_tvm.attacks.training import FitConfig

    cls = {"knockoff": KnockoffConfig, "dfme": DFMEConfig, "maze": MAZEConfig}[attack]
    kw = dict(params)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise DivqatError(
            f"The profile's [attacks.{attack}] has option(s) {unknown} that {cls.__name__} does not have.",
            f"Use only {', '.join(sorted(names))}.",
        )
    if "fit" in kw:
        fit = kw["fit"]
        bad = sorted(set(fit) - {f.name for f in dataclasses.fields(FitConfig)})
        if bad:
            raise DivqatError(
                f"The profile's [attacks.{attack}.fit] has option(s) {bad} that FitConfig does not have.",
                f"Use only {', '.join(f.name for f in dataclasses.fields(FitConfig))}.",
            )
        kw["fit"] = FitConfig(**fit)
    if "steps" in kw:
        kw["steps"] = tuple(kw["steps"])
    try:
        return cls(**kw)
    except ValueError as e:
        raise DivqatError(
            f"The profile's [attacks.{attack}] is invalid: {e}",
            "Fix that value in the profile or the config's [overrides].",
        ) from None


def attack_task(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """One cell: steal the victim through its deployed path with a fresh student; resumes from its query log."""
    import torch

    from divqat_tvm.attacks.generators import pixel_range
    from divqat_tvm.attacks.metrics import Evaluator
    from divqat_tvm.attacks.runner import run_attack
    from divqat_tvm.models import build_model
    from divqat_tvm.oracle import open_oracle

    p = task.params
    victim = ctx.dep(*task.deps[0])
    cfg = attack_config(p["attack"], p["params"])
    info = dataset_info(p["dataset"])
    if getattr(cfg, "generator_output", "tanh") != "tanh" and not cfg.pixel_low:  # the victim's valid pixels
        cfg = dataclasses.replace(cfg, **pixel_range({"mean": list(info.mean), "std": list(info.std)}))
    x, y = _test_tensors(info.name, p["data_dir"])
    victim_pred = torch.from_numpy(np.load(victim["top1"]).astype(np.int64))
    evaluator = Evaluator(
        x,
        y,
        victim_pred,
        reference=f"victim task: {victim['oracle']} with defence {victim['defense']}, {len(x)} test images",
    )
    surrogate = None
    if p["attack"] == "knockoff":
        surrogate = _split(
            p["surrogate"],
            "train",
            p["data_dir"],
            augment=True,
            normalization={"mean": list(info.mean), "std": list(info.std)},
        )
    c, h, _ = info.input_shape
    budget = cfg.budget

    def progress(queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = "") -> None:
        acc = "" if accuracy is None else f" stolen acc {100 * accuracy:.1f}%"
        ctx.report(min(1.0, queries / budget), f"{queries:,}/{budget:,} q {phase}{acc}")

    def attempt() -> dict[str, Any]:
        torch.manual_seed(p["seed"])  # the same student init on every attempt: the log replays exactly
        student = build_model(p["arch"], c, info.num_classes, h)
        with open_oracle(victim["oracle"], defense=victim["defense"], budget=budget) as oracle:
            return run_attack(
                p["attack"],
                oracle,
                student,
                ctx.work_dir,
                cfg,
                seed=p["seed"],
                surrogate=surrogate,
                evaluator=evaluator,
                progress=progress,
                log_inputs=p.get("keep_query_log", True),
                describe={"victim": victim["oracle"], "defense": victim["defense"], "student_arch": p["arch"]},
            )

    res, retries = with_device_retries(attempt, ctx)
    if not p.get("keep_query_log", True):  # the result is final: the log only served to resume
        Path(res["log"]).unlink(missing_ok=True)
        res["log"] = "deleted when the cell finished (set keep_query_logs = true in the config to keep it)"
    return {
        "device_retries": retries,
        "stolen_accuracy": res["stolen_accuracy"],
        "fidelity": res["fidelity"],
        "queries": res["queries_used"],
        "budget": res["budget"],
        "wall_s": res["wall_time_s"],
        "victim_accuracy": res["victim_accuracy"],
        "queries_replayed_from_log": res["queries_replayed_from_log"],
        "attack_result": json.loads(json.dumps(res, default=str)),
    }
