"""Without a cluster: `--executor ray` without Ray is a one-line error (exit 2) naming the fix; finished
cells are shared by content key through a cache directory or an fsspec URL, so a second run directory
computes nothing twice and gets the files with its own paths."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from divqat_tvm.cli import main
from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.grid import expand
from divqat_tvm.experiment.scheduler import result_path, run_tasks

CONFIG = {
    "name": "t",
    "seeds": [0, 1],
    "attacks": ["knockoff"],
    "victims": [{"method": "qat"}, {"method": "divqat", "alpha": 1}],
}

FAKE = textwrap.dedent("""
    import os

    def run(task, ctx):
        with open(os.environ["FAKE_LOG"], "a") as f:
            f.write(task.key + "\\n")
        deps = [ctx.dep(s, i) for s, i in task.deps]
        if task.stage == "victim":
            p = ctx.out_dir / "victim" / (task.id + ".top1.npy")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(task.id.encode())
            return {"top1": str(p)}
        if task.stage == "attack":
            (ctx.work_dir / "student.pt").write_bytes(b"student " + task.id.encode())
            return {"victim_top1": open(deps[0]["top1"], "rb").read().decode()}
        return {"id": task.id}
""")


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "fake_cells.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(mod))
    yield tmp_path / "calls.log"
    sys.modules.pop("fake_cells", None)


def test_executor_ray_without_ray_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    cfg = Path(__file__).resolve().parents[2] / "configs" / "embedded.toml"
    assert main(["experiment", str(cfg), "--executor", "ray", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "needs Ray" in err[0]
        and "pip install 'divqat-tvm[cluster]'" in err[0]
        and "scripts/setup.sh" in err[0]
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert main(["experiment", str(cfg), "--address", "127.0.0.1:6379", "--out", str(tmp_path / "run")]) == 2
    assert "--address" in capsys.readouterr().err
    assert main(["experiment", str(cfg), "--executor", "dask", "--out", str(tmp_path / "run")]) == 2


@pytest.mark.parametrize("url", [False, True])
def test_finished_cells_are_reused_by_content_key_from_a_shared_cache(
    fake: Path, tmp_path: Path, url: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOG", str(fake))
    monkeypatch.setenv("DIVQAT_CACHE_MIRROR", str(tmp_path / "mirror"))
    cache = f"file://{tmp_path / 'shared'}" if url else str(tmp_path / "shared")
    tasks = expand(validate_experiment(CONFIG, "t.toml"))
    first = run_tasks(tasks, tmp_path / "run1", "fake_cells:run", cache_dir=cache)
    assert first.ok and len(first.ran) == len(tasks)
    fake.unlink()
    second = run_tasks(tasks, tmp_path / "run2", "fake_cells:run", cache_dir=cache)
    assert second.ran == [] and sorted(second.from_cache) == sorted(t.key for t in tasks) and not fake.exists()
    rec = json.loads(result_path(tmp_path / "run2", "victim", "mnist5k__qat").read_text())
    assert rec["result"]["top1"] == str(tmp_path / "run2" / "victim" / "mnist5k__qat.top1.npy")  # relocated
    assert Path(rec["result"]["top1"]).read_bytes() == b"mnist5k__qat"
    assert (
        tmp_path / "run2" / "work" / "attack" / "mnist5k__qat__knockoff__s1" / "student.pt"
    ).read_bytes() == b"student mnist5k__qat__knockoff__s1"
    # another parameter is another key: that cell (and only it) runs
    more = {**CONFIG, "overrides": {"attacks": {"knockoff": {"budget": 123}}}}
    third = run_tasks(expand(validate_experiment(more, "t.toml")), tmp_path / "run3", "fake_cells:run", cache_dir=cache)
    assert sorted(third.ran) == sorted(t.key for t in tasks if t.stage == "attack")


def test_artefacts_of_a_url_cache_are_built_once_for_every_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from divqat_tvm.experiment.cache import ensure, fetch_referenced, task_cache_dir

    url, calls = f"file://{tmp_path / 'bucket'}", []

    def build(d: Path) -> dict:
        calls.append(d)
        (d / "sub").mkdir()
        (d / "sub" / "weights.bin").write_bytes(b"w" * 10)
        return {"ok": 1}

    monkeypatch.setenv("DIVQAT_CACHE_MIRROR", str(tmp_path / "node-a"))
    a, info = ensure(url, "teacher", "t", {"x": 1}, build)
    assert info == {"ok": 1} and len(calls) == 1 and a.is_relative_to(tmp_path / "node-a")
    monkeypatch.setenv("DIVQAT_CACHE_MIRROR", str(tmp_path / "node-b"))  # another node: downloads, never rebuilds
    b, info_b = ensure(task_cache_dir(url), "teacher", "t", {"x": 1}, build)
    assert len(calls) == 1 and info_b == info and (b / "sub" / "weights.bin").read_bytes() == b"w" * 10
    # a dependency's result naming an artefact this node lacks: fetched before the task reads it
    monkeypatch.setenv("DIVQAT_CACHE_MIRROR", str(tmp_path / "node-a"))
    c, _ = ensure(url, "model", "m", {"y": 2}, build)
    rel = c.relative_to(task_cache_dir(url))
    monkeypatch.setenv("DIVQAT_CACHE_MIRROR", str(tmp_path / "node-b"))
    c_on_b = task_cache_dir(url) / rel
    assert not c_on_b.exists()
    fetch_referenced({"checkpoint": str(c_on_b / "sub" / "weights.bin")}, task_cache_dir(url))
    assert (c_on_b / "sub" / "weights.bin").read_bytes() == b"w" * 10 and len(calls) == 2
