"""The benchmark's two phases: tune a base LR per (workload, optimizer), then run the grid.

This process writes every finished cell to the store, one transaction per cell, so a killed
run keeps every cell that finished. Before running a cell it claims it in the store
(:mod:`learnlr.bench.leases`), so several processes started on one ``--out`` split the cells
between them, and each waits for the others' cells before it goes on (tuning must be complete
before the grid's base LRs are known) and before it reports.

Example::

    plan = run_benchmark(BenchRequest(suite=SUITES["tiny"], out_dir=Path("out")))
    plan.main_hashes  # the cells the summary covers
    plan.computed     # how many of them this process computed
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnlr.bench.backends import Executor, open_executor
from learnlr.bench.leases import Heartbeat, Owner
from learnlr.bench.records import CellConfig
from learnlr.bench.schedules import SCHEDULES, schedule_fingerprint
from learnlr.bench.store import STORE_FILENAME, ExperimentStore
from learnlr.bench.suites import TUNING_SEED, Suite
from learnlr.bench.workloads import load_workloads

TUNE_MODES = ("shared", "per-schedule")
"""``shared``: every schedule starts from the constant schedule's tuned LR. ``per-schedule``:
each fixed schedule gets its own LR from the same grid and seed (AlgoPerf's external tuning, for
the strongest possible baselines); adaptive schedules and peers keep the shared one."""

POLL_S = 1.0
"""How often a process with nothing to run looks for cells finished (or freed) by others."""


@dataclass
class BenchRequest:
    """What ``learnlr bench`` asks for (names and budgets already validated by the CLI)."""

    suite: Suite
    out_dir: Path
    workloads: tuple[str, ...] | None = None
    optimizers: tuple[str, ...] | None = None
    schedules: tuple[str, ...] | None = None
    seeds: int | None = None
    backend: str = "local"
    workers: int = 1
    plugins: tuple[str, ...] = ()
    tune: str = "shared"
    """One of :data:`TUNE_MODES`."""
    first_seed: int = 0
    """Seeds run are ``first_seed .. first_seed + seeds - 1`` (the RL trainer's base runs use
    seeds the evaluation never sees)."""
    purpose: str = "main"
    """What the store records the cells as: ``learnlr report`` shows the ``"main"`` ones; the
    RL trainer's base runs are ``"rl-base"``."""

    def __post_init__(self) -> None:
        if self.tune not in TUNE_MODES:
            raise ValueError(f"tune must be one of {TUNE_MODES}, got {self.tune!r}")


@dataclass
class BenchPlan:
    """The cells a request resolved to, and who computed them."""

    main: list[CellConfig] = field(default_factory=list)
    base_lrs: dict[tuple[str, str], float] = field(default_factory=dict)
    schedule_lrs: dict[tuple[str, str, str], float] = field(default_factory=dict)
    """``--tune per-schedule``: (workload, optimizer, fixed schedule) -> its own base LR."""
    computed: int = 0
    """Cells this process computed and stored (tuning and grid)."""
    by_others: int = 0
    """Cells of the request that other processes stored while this one ran."""

    @property
    def main_hashes(self) -> set[str]:
        """Config hashes of the comparison cells."""
        return {c.hash for c in self.main}


class Progress:
    """What :func:`run_benchmark` reports to (the CLI shows a rich progress bar)."""

    def phase(self, name: str, total: int) -> None:
        """A phase with ``total`` cells still to run starts."""

    def advance(self, config: CellConfig, *, elsewhere: bool = False) -> None:
        """One cell was stored (``elsewhere``: by another process)."""


def workload_budget(workload: Any, suite: Suite) -> tuple[int, int] | None:
    """(budget steps, eval every) of ``workload`` in ``suite``, or None if it has none."""
    key = suite.budget_key
    if key not in workload.budget_steps or key not in workload.eval_every:
        return None
    return int(workload.budget_steps[key]), int(workload.eval_every[key])


@dataclass
class _Run:
    """What one phase needs: the store, the executor, this process's identity, the plan."""

    store: ExperimentStore
    executor: Executor
    owner: Owner
    suite: str
    progress: Progress
    plan: BenchPlan

    def run(self, configs: Sequence[CellConfig], phase: str, purpose: str) -> None:
        """Run every cell of ``configs`` not yet stored, sharing them with other processes."""
        stored = self.store.finished_hashes()
        remaining = {c.hash: c for c in configs if c.hash not in stored}
        self.progress.phase(phase, len(remaining))
        running: set[str] = set()
        while remaining:
            free = self.executor.slots - len(running)
            if free > 0:
                todo = (c for h, c in remaining.items() if h not in running)
                for config in self.store.claim(todo, self.owner, free):
                    running.add(config.hash)
                    self.executor.submit(config)
            if running:
                for result in self.executor.wait(timeout=POLL_S):
                    # False: another process stored it first (it took over a stale claim).
                    stored_here = self.store.write_cell(result, suite=self.suite,
                                                        purpose=purpose)
                    running.discard(result.config.hash)
                    del remaining[result.config.hash]
                    self.plan.computed += stored_here
                    self.plan.by_others += not stored_here
                    self.progress.advance(result.config, elsewhere=not stored_here)
            else:  # every remaining cell is claimed by another live process
                time.sleep(POLL_S)
            for h in self.store.finished_hashes() & (remaining.keys() - running):
                self.plan.by_others += 1
                self.progress.advance(remaining.pop(h), elsewhere=True)


def _tune_base_lrs(run: _Run, request: BenchRequest, budgets: dict[str, tuple[int, int]],
                   optimizers: Sequence[str]) -> None:
    """Phase 1: a base LR per (workload, optimizer) by the constant-schedule grid protocol."""
    store, suite = run.store, request.suite
    pending: list[tuple[str, str, list[CellConfig]]] = []
    for w, (budget, every) in budgets.items():
        for o in optimizers:
            cached = store.base_lr(w, o, budget)
            if cached is not None:
                run.plan.base_lrs[(w, o)] = cached
                continue
            grid = [CellConfig(w, o, "constant", TUNING_SEED, lr, budget, every)
                    for lr in suite.lr_grid(o)]
            pending.append((w, o, grid))
    run.run([c for _, _, grid in pending for c in grid], "tuning base LRs", "tune")
    for w, o, grid in pending:
        run.plan.base_lrs[(w, o)] = _choose_base_lr(store, grid)


def _tune_per_schedule(run: _Run, request: BenchRequest, budgets: dict[str, tuple[int, int]],
                       optimizers: Sequence[str], schedules: Sequence[str]) -> None:
    """``--tune per-schedule``: each fixed schedule's own LR from the same grid and seed."""
    grids = {}
    for w, (budget, every) in budgets.items():
        for o in optimizers:
            for s in schedules:
                if SCHEDULES[s].kind == "fixed" and s != "constant" and o in SCHEDULES[s].optimizers:
                    grids[(w, o, s)] = [CellConfig(w, o, s, TUNING_SEED, lr, budget, every)
                                        for lr in request.suite.lr_grid(o)]
    run.run([c for grid in grids.values() for c in grid], "tuning each fixed schedule", "tune")
    for key, grid in grids.items():
        run.plan.schedule_lrs[key] = _best_lr(grid, _grid_losses(run.store, grid))


def _grid_losses(store: ExperimentStore, grid: list[CellConfig]) -> list[float | None]:
    return [store.get_result(c)["final_val_loss"] for c in grid]


def _best_lr(grid: list[CellConfig], losses: list[float | None]) -> float:
    """The grid's LR with the lowest final val loss (diverged = inf; ties: the smaller LR)."""
    ranked = sorted(zip(grid, losses, strict=True),
                    key=lambda item: (float("inf") if item[1] is None else item[1],
                                      item[0].base_lr))
    return ranked[0][0].base_lr


def _choose_base_lr(store: ExperimentStore, grid: list[CellConfig]) -> float:
    """The grid's best LR (:func:`_best_lr`), stored with its grid as the shared base LR."""
    losses = _grid_losses(store, grid)  # read once: they are also stored with the choice
    chosen = _best_lr(grid, losses)
    first = grid[0]
    store.set_base_lr(first.workload, first.optimizer, first.budget_steps, chosen, {
        "rule": "lowest final val loss of the constant schedule (diverged = inf)",
        "seed": TUNING_SEED,
        "grid": [c.base_lr for c in grid],
        "final_val_losses": losses,
        # The best LR on the grid's edge means the optimum may lie outside it.
        "at_grid_edge": len(grid) > 1 and chosen in (grid[0].base_lr, grid[-1].base_lr),
    })
    return chosen


def _main_grid(plan: BenchPlan, suite: Suite, budgets: dict[str, tuple[int, int]],
               optimizers: Sequence[str], schedules: Sequence[str], seeds: Sequence[int]
               ) -> list[CellConfig]:
    """Phase 2's cells: every schedule in the optimizer columns it runs in, on its LR tracks,
    every seed."""
    cells = []
    for w, (budget, every) in budgets.items():
        for o in optimizers:
            for s in schedules:
                spec = SCHEDULES[s]
                if o not in spec.optimizers:
                    continue
                lr = plan.base_lrs[(w, o)] if spec.uses_base_lr else 1.0
                lr = plan.schedule_lrs.get((w, o, s), lr)
                fingerprint = schedule_fingerprint(s)
                cells += [CellConfig(w, o, s, seed, lr, budget, every, fingerprint,
                                     lr_scale=scale)
                          for scale in suite.scales_for(s, spec.uses_base_lr)
                          for seed in seeds]
    return cells


def run_benchmark(request: BenchRequest, progress: Progress | None = None) -> BenchPlan:
    """Tune base LRs (cached), then run every missing comparison cell; returns the plan.

    Raises ValueError for a workload that is unknown or has no budget in the suite (the CLI
    checks both first) and :class:`~learnlr.bench.store.StoreError` for an unusable store.
    """
    suite = request.suite
    registry = load_workloads(request.plugins)
    budgets = {}
    for name in request.workloads or suite.workloads:
        if name not in registry:
            raise ValueError(f"workload {name!r} is unknown; valid workloads: {sorted(registry)}")
        budget = workload_budget(registry[name], suite)
        if budget is None:
            raise ValueError(f"workload {name!r} has no budget for suite {suite.budget_key!r}")
        budgets[name] = budget
    optimizers = request.optimizers or suite.optimizers
    path = request.out_dir / STORE_FILENAME
    plan, owner = BenchPlan(), Owner.current()
    with ExperimentStore(path) as store:
        try:
            with Heartbeat(path, owner), open_executor(
                    request.backend, request.workers, request.plugins) as executor:
                run = _Run(store, executor, owner, suite.name, progress or Progress(), plan)
                _tune_base_lrs(run, request, budgets, optimizers)
                schedules = request.schedules or suite.schedules
                if request.tune == "per-schedule":
                    _tune_per_schedule(run, request, budgets, optimizers, schedules)
                seeds = request.seeds if request.seeds is not None else suite.seeds
                plan.main = _main_grid(plan, suite, budgets, optimizers, schedules,
                                       range(request.first_seed, request.first_seed + seeds))
                if request.purpose == "main":  # other purposes never demote report cells
                    store.supersede(plan.main)
                store.mark_purpose(plan.main_hashes, request.purpose)
                run.run(plan.main, "running cells", request.purpose)
        finally:
            store.release_claims(owner)
    return plan
