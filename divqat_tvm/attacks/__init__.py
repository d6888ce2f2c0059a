"""Model-extraction attacks through the query interface only: KnockoffNets, DFME, MAZE.

Public API: `run_attack(attack, victim, student, out_dir, cfg, ...)`, `replay_log(...)`, the configs
`KnockoffConfig`, `DFMEConfig`, `MAZEConfig`, `FitConfig`, `QueryLog`, `Evaluator`. Attacks see the
victim only as an object with `query`, `queries`, `input_shape` and `num_classes`, and train their
students on the returned probability vectors (never argmax labels). CLI: `divqat-tvm attack`.
"""

from divqat_tvm.attacks.dfme import DFMEConfig
from divqat_tvm.attacks.knockoff import KnockoffConfig
from divqat_tvm.attacks.maze import MAZEConfig
from divqat_tvm.attacks.metrics import Evaluator
from divqat_tvm.attacks.querylog import QueryLog, QueryLogError
from divqat_tvm.attacks.runner import ATTACKS, replay_log, run_attack
from divqat_tvm.attacks.training import FitConfig

__all__ = [
    "ATTACKS",
    "DFMEConfig",
    "Evaluator",
    "FitConfig",
    "KnockoffConfig",
    "MAZEConfig",
    "QueryLog",
    "QueryLogError",
    "replay_log",
    "run_attack",
]
