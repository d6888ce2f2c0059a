"""Experiments: a grid of dataset × victim × attack × seed, run resumably task by task.

Public API: `load_experiment(path, profile=None) -> Experiment`, `expand(exp) -> [Task]`,
`run_experiment(exp, out_dir, ...)` (in `run.py`), `run_tasks(tasks, out_dir, fn_spec, workers)`.
"""

from divqat_tvm.experiment.config import ConfigError, Experiment, load_experiment, load_profile
from divqat_tvm.experiment.grid import Task, expand

__all__ = ["ConfigError", "Experiment", "Task", "expand", "load_experiment", "load_profile"]
