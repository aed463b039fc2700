"""Structure-neutral level scheduling: the topological levels of any DAG (trees included), the
loop that runs a cell over them (:mod:`.run`) and the fused kernels (:mod:`.kernels`)."""

from structrnn.levels.run import run_down, run_schedule, run_up
from structrnn.levels.schedule import (
    Schedule,
    TreeSchedule,
    compute_depth,
    compute_height,
    make_schedule,
    tree_schedule,
)

__all__ = ["Schedule", "TreeSchedule", "make_schedule", "tree_schedule", "compute_height",
           "compute_depth", "run_schedule", "run_up", "run_down"]
