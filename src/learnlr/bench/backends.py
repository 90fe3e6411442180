"""Where cells run (a local process pool or Ray tasks) and the benchmark's two phases.

Workers only *compute*; the parent process writes every finished cell to the store, one
transaction per cell, so the store never sees concurrent writers and a killed run keeps every
cell that finished. Because a cell is a pure function of its config, the local pool, a single
process and Ray give the same numbers for the same seeds (wall times aside).

Example::

    plan = run_benchmark(BenchRequest(suite=SUITES["tiny"], out_dir=Path("out")))
    plan.main_hashes  # the cells the summary covers
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnlr.bench.runner import CellConfig, CellResult, load_workloads, run_cell
from learnlr.bench.schedules import SCHEDULES, schedule_fingerprint
from learnlr.bench.store import STORE_FILENAME, ExperimentStore
from learnlr.bench.suites import TUNING_SEED, Suite

BACKENDS = ("local", "ray")

OnResult = Callable[[CellResult], None]


def _exit_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: exit when the parent dies.

    A SIGKILLed ``learnlr bench`` cannot shut its pool down, and pool workers blocked on their
    task queue would otherwise live on as orphans, still burning CPU on an unwanted cell.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _run_cell_task(config_json: dict[str, Any], plugins: list[str]) -> CellResult:
    return run_cell(CellConfig.from_json(config_json), plugins)


class Backend:
    """Runs cells; one instance keeps its worker pool / Ray session for all its batches.

    Use as a context manager: ``with Backend("local", 2) as b: b.run(configs, on_result)``.
    Worker start-up (importing torch and the workloads, or starting Ray) is paid once.
    """

    def __init__(self, backend: str = "local", workers: int = 1,
                 plugins: Sequence[str] = ()) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.backend, self.workers, self.plugins = backend, workers, list(plugins)
        self._stack = contextlib.ExitStack()
        self._pool: ProcessPoolExecutor | None = None
        self._ray_task: Any = None

    def __enter__(self) -> Backend:
        if self.backend == "ray":
            import ray

            self._stack.enter_context(ray_session(self.workers))
            self._ray_task = ray.remote(num_cpus=1)(_run_cell_task)
        elif self.workers > 1:
            # spawn, not fork: a forked torch process can deadlock on inherited thread pools.
            ctx = multiprocessing.get_context("spawn")
            self._pool = self._stack.enter_context(ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx,
                initializer=_exit_with_parent, initargs=(os.getpid(),)))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._pool is not None:
            # Leaving on an error: start no queued cell (their results would be thrown away).
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._stack.close()

    def run(self, configs: Sequence[CellConfig], on_result: OnResult) -> None:
        """Run ``configs``; ``on_result`` is called in this process as each one finishes."""
        if not configs:
            return
        if self._ray_task is not None:
            import ray

            pending = [self._ray_task.remote(c.to_json(), self.plugins) for c in configs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    on_result(ray.get(ref))
        elif self._pool is not None:
            futures = [self._pool.submit(_run_cell_task, c.to_json(), self.plugins)
                       for c in configs]
            for future in as_completed(futures):
                on_result(future.result())
        else:
            for config in configs:
                on_result(run_cell(config, self.plugins))


def execute(
    configs: Sequence[CellConfig],
    on_result: OnResult,
    *,
    backend: str = "local",
    workers: int = 1,
    plugins: Sequence[str] = (),
) -> None:
    """Run ``configs`` once on a fresh :class:`Backend`."""
    with Backend(backend, workers, plugins) as runner:
        runner.run(configs, on_result)


@contextlib.contextmanager
def ray_session(workers: int) -> Iterator[None]:
    """Start a local Ray instance for the block unless one is already running."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Workers must import what the driver imports (plugins live on the driver's sys.path).
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class BenchRequest:
    """What ``learnlr bench`` asks for (names already validated)."""

    suite: Suite
    out_dir: Path
    workloads: tuple[str, ...] | None = None
    optimizers: tuple[str, ...] | None = None
    schedules: tuple[str, ...] | None = None
    seeds: int | None = None
    backend: str = "local"
    workers: int = 1
    plugins: tuple[str, ...] = ()


@dataclass
class BenchPlan:
    """The cells a request resolved to."""

    main: list[CellConfig] = field(default_factory=list)
    base_lrs: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def main_hashes(self) -> set[str]:
        """Config hashes of the comparison cells."""
        return {c.hash for c in self.main}


class Progress:
    """What :func:`run_benchmark` reports to (the CLI shows a rich progress bar)."""

    def phase(self, name: str, total: int) -> None:
        """A phase with ``total`` cells to run starts."""

    def advance(self, result: CellResult) -> None:
        """One cell finished."""


def _budget(workload: Any, suite: Suite) -> tuple[int, int]:
    key = suite.budget_key
    try:
        return int(workload.budget_steps[key]), int(workload.eval_every[key])
    except KeyError as exc:
        raise ValueError(
            f"workload {workload.name!r} has no budget for suite {key!r}; "
            f"it defines {sorted(workload.budget_steps)}"
        ) from exc


def run_benchmark(request: BenchRequest, progress: Progress | None = None) -> BenchPlan:
    """Tune base LRs (cached), then run every missing comparison cell; returns the plan."""
    progress = progress or Progress()
    suite = request.suite
    registry = load_workloads(request.plugins)
    workload_names = request.workloads or suite.workloads
    optimizers = request.optimizers or suite.optimizers
    schedules = request.schedules or suite.schedules
    seeds = request.seeds if request.seeds is not None else suite.seeds
    for name in workload_names:
        if name not in registry:
            raise ValueError(f"workload {name!r} is unknown; valid workloads: {sorted(registry)}")
    budgets = {w: _budget(registry[w], suite) for w in workload_names}

    store = ExperimentStore(request.out_dir / STORE_FILENAME)
    try:
        with Backend(request.backend, request.workers, request.plugins) as backend:
            plan = BenchPlan()

            def run_and_store(configs: list[CellConfig], phase: str, purpose: str) -> None:
                todo = [c for c in configs if not store.has_cell(c)]
                progress.phase(phase, len(todo))

                def on_result(result: CellResult) -> None:
                    store.write_cell(result, suite=suite.name, purpose=purpose)
                    progress.advance(result)

                backend.run(todo, on_result)

            # Phase 1: base LR per (workload, optimizer) by the constant-schedule grid protocol.
            tuning: list[CellConfig] = []
            pending: list[tuple[str, str, list[CellConfig]]] = []
            for w in workload_names:
                budget, every = budgets[w]
                for o in optimizers:
                    cached = store.base_lr(w, o, budget)
                    if cached is not None:
                        plan.base_lrs[(w, o)] = cached
                        continue
                    grid = [CellConfig(w, o, "constant", TUNING_SEED, lr, budget, every)
                            for lr in suite.lr_grid(o)]
                    tuning.extend(grid)
                    pending.append((w, o, grid))
            run_and_store(tuning, "tuning base LRs", "tune")
            for w, o, grid in pending:
                losses = [store.get_result(c)["final_val_loss"] for c in grid]
                ranked = sorted(
                    zip(grid, losses, strict=True),
                    key=lambda item: (float("inf") if item[1] is None else item[1],
                                      item[0].base_lr),
                )
                chosen = ranked[0][0].base_lr
                plan.base_lrs[(w, o)] = chosen
                store.set_base_lr(w, o, grid[0].budget_steps, chosen, {
                    "rule": "lowest final val loss of the constant schedule (diverged = inf)",
                    "seed": TUNING_SEED,
                    "grid": [c.base_lr for c in grid],
                    "final_val_losses": losses,
                    # The best LR on the grid's edge means the optimum may lie outside it.
                    "at_grid_edge": len(grid) > 1 and chosen in (grid[0].base_lr,
                                                                 grid[-1].base_lr),
                })

            # Phase 2: the comparison grid.
            for w in workload_names:
                budget, every = budgets[w]
                for o in optimizers:
                    for s in schedules:
                        spec = SCHEDULES[s]
                        if o not in spec.optimizers:
                            continue
                        lr = plan.base_lrs[(w, o)] if spec.uses_base_lr else 1.0
                        fingerprint = schedule_fingerprint(s)
                        for scale in suite.scales_for(s, spec.uses_base_lr):
                            for seed in range(seeds):
                                plan.main.append(CellConfig(w, o, s, seed, lr, budget, every,
                                                            fingerprint, lr_scale=scale))
            store.supersede(plan.main)
            store.mark_purpose(plan.main_hashes, "main")
            run_and_store(plan.main, "running cells", "main")
            return plan
    finally:
        store.close()


def default_workers() -> int:
    """One worker per available CPU core (each cell pins torch to one thread)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

