"""Which workloads, optimizers, schedules and seeds each suite runs, and the base-LR protocol.

Base-LR protocol (the paper shared one LR across schedules): for each (workload, optimizer) the
constant schedule is trained once (seed 0, the suite's budget) at every LR of a small log-grid;
the LR with the lowest final validation loss wins (a diverged run counts as +inf; ties go to
the smaller LR). The choice, the grid and every grid loss are stored in the experiment store
(table ``base_lrs``) and reused by every schedule of that (workload, optimizer) and by later
runs with the same budget. Peers that set their own step size (Prodigy, D-Adaptation, SLS) run
with lr = 1 as their packages/papers recommend.
"""

from __future__ import annotations

from dataclasses import dataclass

from learnlr.bench.schedules import SCHEDULES

ALL_WORKLOADS = (
    "digits-cnn",
    "mnist1d",
    "reviews-text",
    "reviews-imbalanced",
    "char-lm",
    "elec-forecast",
    "graph-nodes",
    "longtail-digits",
)

LR_SCALES = (0.1, 1.0, 10.0)
"""LR tracks: the tuned base LR, and 10x too small / too large (where feedback earns its keep)."""

# The schedules a user would pick instead of learnlr (and learnlr's own), run on every LR
# track; the rest (peers, HD, RL, onecycle, ...) run on the tuned track only, and peers that set
# their own step size (Prodigy, D-Adaptation, SLS) run once and count in every track. Nine
# schedules keep the quick suite under 10 minutes on 2 cores.
TRACK_SCHEDULES = (
    "constant", "step", "linear", "cosine", "wsd", "greedy_step", "greedy_reactive", "greedy_eval",
    "greedy_eval_budget",
)

LR_GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.03, 0.1, 0.3),
    "adamw": (3e-4, 1e-3, 3e-3, 1e-2),
    "adagrad": (3e-3, 1e-2, 3e-2, 1e-1),
}
TUNING_SEED = 0


@dataclass(frozen=True)
class Suite:
    """A named selection of cells. ``budget_key`` picks each workload's budget / eval interval."""

    name: str
    workloads: tuple[str, ...]
    optimizers: tuple[str, ...]
    schedules: tuple[str, ...]
    seeds: int
    lr_grid_size: int
    """How many grid points (centred in :data:`LR_GRIDS`) the base-LR protocol tries."""
    description: str
    lr_scales: tuple[float, ...] = (1.0,)
    """LR tracks (multiples of the tuned base LR) for :attr:`track_schedules`."""
    track_schedules: tuple[str, ...] = TRACK_SCHEDULES
    """Schedules run on every LR track; all others run on the tuned track (1.0) only."""

    def scales_for(self, schedule: str, uses_base_lr: bool) -> tuple[float, ...]:
        """The LR tracks ``schedule`` runs on."""
        if uses_base_lr and schedule in self.track_schedules:
            return self.lr_scales
        return (1.0,)

    @property
    def budget_key(self) -> str:
        """Key into :attr:`Workload.budget_steps` / :attr:`Workload.eval_every`."""
        return self.name

    def lr_grid(self, optimizer: str) -> tuple[float, ...]:
        """The base-LR grid this suite tries for ``optimizer``."""
        grid = LR_GRIDS[optimizer]
        drop = len(grid) - self.lr_grid_size
        start = (drop + 1) // 2  # centred; with an odd drop, drop the extra point at the bottom
        return grid[start:start + self.lr_grid_size]


SUITES: dict[str, Suite] = {
    "tiny": Suite(
        name="tiny",
        workloads=("digits-cnn",),
        optimizers=("sgd",),
        schedules=("constant", "cosine", "wsd", "greedy_step", "greedy_eval"),
        seeds=1,
        lr_grid_size=2,
        description="smoke test: one workload, SGD, five schedules, one seed, three LR tracks (CI)",
        lr_scales=LR_SCALES,
    ),
    "quick": Suite(
        name="quick",
        workloads=ALL_WORKLOADS,
        optimizers=("sgd", "adamw"),
        schedules=tuple(SCHEDULES),
        seeds=1,
        lr_grid_size=3,
        description="every workload and schedule, SGD + AdamW, one seed, short budgets, "
        "x0.1 / x1 / x10 LR tracks (`make demo`)",
        lr_scales=LR_SCALES,
    ),
    "full": Suite(
        name="full",
        workloads=ALL_WORKLOADS,
        optimizers=("sgd", "adamw", "adagrad"),
        schedules=tuple(SCHEDULES),
        seeds=3,
        lr_grid_size=4,
        description="the evidence: every workload, optimizer and schedule, three seeds, "
        "x0.1 / x1 / x10 LR tracks",
        lr_scales=LR_SCALES,
    ),
}
