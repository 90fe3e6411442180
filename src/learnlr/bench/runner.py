"""One benchmark cell = one training run of (workload, optimizer, schedule, seed).

The runner owns the loop, seeding, timing and evaluation (AlgoPerf's split); the workload owns
data, model, loss and metric. Everything is a function of the cell's config, so the same config
gives the same numbers in any process (local pool or Ray worker): each run pins torch to one
thread and seeds torch, numpy and ``random`` from the cell's seed (:class:`RunRNG`: the
caller's global RNG states are restored afterwards).

Example::

    config = CellConfig("digits-cnn", "sgd", "greedy_step", seed=0, base_lr=0.1,
                        budget_steps=300, eval_every=30)
    result = run_cell(config)
    result.summary["final_val_loss"], result.trajectory_lr[:3]

The loop itself is :class:`TrainingRun` (a generator of optimizer steps), which the RL workload
environment drives too, so a policy sees exactly the runs the benchmark measures. Cell configs
and results are the torch-free records of :mod:`learnlr.bench.records` (re-exported here).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learnlr.bench.records import (
    BUDGET_FRACTIONS,
    HARNESS_VERSION,
    CellConfig,
    CellResult,
    config_hash,
)
from learnlr.bench.schedules import TrainingHooks, build_schedule, effective_lr
from learnlr.bench.workloads import load_workloads, shared_workload
from learnlr.bench.workloads.base import Workload

__all__ = [
    "BUDGET_FRACTIONS", "HARNESS_VERSION", "CellConfig", "CellResult", "RunRNG", "StepOutcome",
    "TrainingRun", "config_hash", "get_workload_instance", "load_workloads", "run_cell",
]

# The lookup lives with the workloads; this name is kept for callers of the runner.
get_workload_instance = shared_workload


class RunRNG:
    """The global RNG states (``random``, numpy, torch CPU) of one run, seeded from its seed.

    A run's code executes inside :meth:`active`, which swaps the run's states in and the
    caller's back out, so a run sees the same global random numbers however its steps are
    interleaved with other code (an RL agent sampling actions between decisions) and the
    caller's RNGs are left as they were. A swap costs ~0.2 ms: do it per run or per decision,
    not per optimizer step.
    """

    def __init__(self, seed: int) -> None:
        outer = self._capture()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self._state = self._capture()
        self._restore(outer)

    @staticmethod
    def _capture() -> tuple[Any, Any, torch.Tensor]:
        return random.getstate(), np.random.get_state(), torch.get_rng_state()

    @staticmethod
    def _restore(state: tuple[Any, Any, torch.Tensor]) -> None:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])

    @contextmanager
    def active(self) -> Iterator[None]:
        outer = self._capture()
        self._restore(self._state)
        try:
            yield
        finally:
            self._state = self._capture()
            self._restore(outer)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StepOutcome:
    """What one optimizer step of :meth:`TrainingRun.steps` did."""

    step: int
    """0-based index of the optimizer step."""
    loss: float
    """Its training loss (may be non-finite: then the run has diverged and stops)."""
    lr: float
    """The step size it used (:func:`learnlr.bench.schedules.effective_lr`)."""
    val_loss: float | None = None
    """The validation loss of the evaluation that followed it, if one did."""


@dataclass
class TrainingRun:
    """One training run of a workload: the harness's loop, shared by :func:`run_cell` and
    :class:`learnlr.rl.workload_env.WorkloadLRControlEnv` (which drives it between decisions).

    Build it with :meth:`start`; run its code inside ``with run.rng.active():``.
    """

    workload: Workload
    model: torch.nn.Module
    hooks: TrainingHooks
    generator: torch.Generator
    rng: RunRNG
    budget_steps: int
    evals: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    """``"ok"``, or ``"diverged"`` once a training or validation loss was non-finite."""

    @classmethod
    def start(
        cls,
        workload: Workload,
        seed: int,
        build: Callable[[Iterable[torch.nn.Parameter]], TrainingHooks],
        budget_steps: int,
    ) -> TrainingRun:
        """Seed the run (global RNGs and the batch generator), set up data, model and optimizer."""
        rng = RunRNG(seed)
        with rng.active():
            workload.setup(seed)
            model = workload.make_model(seed)
            hooks = build(model.parameters())
        return cls(workload, model, hooks, torch.Generator().manual_seed(seed), rng, budget_steps)

    def evaluate(self) -> float:
        """Validation loss of the current model (switches to eval mode and back)."""
        return float(self._evaluate().loss)

    def _evaluate(self) -> Any:
        if self.hooks.eval_mode is not None:
            self.hooks.eval_mode()
        self.model.eval()
        with torch.no_grad():
            result = self.workload.evaluate(self.model)
        self.model.train()
        if self.hooks.train_mode is not None:
            self.hooks.train_mode()
        return result

    def _record_eval(self, step: int) -> float:
        result = self._evaluate()
        self.evals.append({
            "step": step,
            "val_loss": _finite(float(result.loss)),
            "metric": _finite(float(result.metric)),
            "extra": {k: _finite(float(v)) for k, v in result.extra.items()},
        })
        return float(result.loss)

    def _optimizer_step(self, step: int) -> float:
        batch = self.workload.batch(step, self.generator)
        optimizer, model = self.hooks.optimizer, self.model
        if self.hooks.needs_closure:
            loss = optimizer.step(lambda batch=batch: self.workload.loss(model, batch))
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = self.workload.loss(model, batch)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def steps(self, eval_every: int | None, final_eval: bool = True) -> Iterator[StepOutcome]:
        """Train for the budget, yielding after every optimizer step (and its scheduler step and
        evaluation); stops early, with :attr:`status` ``"diverged"``, at a non-finite loss.

        Evaluates every ``eval_every`` steps (None: never) and after the last step if
        ``final_eval``. A consumer may change the optimizer's LR between two yields.
        """
        hooks = self.hooks
        self.model.train()
        if hooks.train_mode is not None:
            hooks.train_mode()
        for step in range(self.budget_steps):
            train_loss = self._optimizer_step(step)
            # The LR that this step used (HD and SLS set it inside step(), schedulers after it).
            lr = effective_lr(hooks.optimizer)
            val_loss = None
            if math.isfinite(train_loss):
                if hooks.step_on in ("step", "step_then_eval"):
                    hooks.scheduler.step()
                elif hooks.step_on in ("step_loss", "step_loss_then_eval"):
                    hooks.scheduler.step(train_loss)
                done = step + 1
                if (eval_every is not None and done % eval_every == 0) or (
                        final_eval and done == self.budget_steps):
                    val_loss = self._record_eval(done)
                    if math.isfinite(val_loss) and hooks.step_on == "eval_loss":
                        hooks.scheduler.step(val_loss)
                    elif math.isfinite(val_loss) and hooks.step_on in ("step_then_eval",
                                                                       "step_loss_then_eval"):
                        hooks.scheduler.decide(val_loss)
            if not math.isfinite(train_loss if val_loss is None else val_loss):
                self.status = "diverged"
            yield StepOutcome(step, train_loss, lr, val_loss)
            if self.status == "diverged":
                return


def run_cell(config: CellConfig, plugins: Iterable[str] = (),
             hooks: Callable[[Iterable[torch.nn.Parameter], CellConfig], TrainingHooks] | None
             = None) -> CellResult:
    """Train one cell and return its measures; never raises on divergence (status "diverged").

    ``hooks(params, config)`` builds the optimizer and scheduler instead of the registry entry
    ``config.schedule`` (a schedule that is not registered, e.g. a policy under evaluation).
    """
    torch.set_num_threads(1)
    workload = shared_workload(config.workload, plugins)

    def build(params: Iterable[torch.nn.Parameter]) -> TrainingHooks:
        if hooks is not None:
            return hooks(params, config)
        return build_schedule(config.schedule, params, config.optimizer, base_lr=config.lr,
                              budget_steps=config.budget_steps, eval_every=config.eval_every)[1]

    run = TrainingRun.start(workload, config.seed, build, config.budget_steps)
    lrs: list[float | None] = []
    train_losses: list[float | None] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    with run.rng.active():
        for outcome in run.steps(config.eval_every):
            # None for a non-finite LR (an HD optimizer can produce one just before diverging).
            lrs.append(_finite(outcome.lr))
            train_losses.append(_finite(outcome.loss))
    wall_time = time.perf_counter() - start
    cpu_time = time.process_time() - start_cpu  # unaffected by other processes on the machine

    summary = _measures(config, workload, run.evals, run.status, wall_time, len(lrs))
    summary["cpu_time_s"] = cpu_time
    return CellResult(config, summary, lrs, train_losses, run.evals)


def _value_at_fraction(evals: list[dict[str, Any]], budget: int, fraction: float) -> float | None:
    """Val loss of the latest evaluation at or before ``fraction`` of the budget.

    Falls back to the first evaluation when the fraction comes before it (short budgets).
    """
    if not evals:
        return None
    limit = fraction * budget + 1e-9
    chosen = evals[0]
    for record in evals:
        if record["step"] <= limit:
            chosen = record
    return chosen["val_loss"]


def _measures(
    config: CellConfig,
    workload: Workload,
    evals: list[dict[str, Any]],
    status: str,
    wall_time: float,
    steps_run: int,
) -> dict[str, Any]:
    losses = [e["val_loss"] for e in evals if e["val_loss"] is not None]
    metrics = [e["metric"] for e in evals if e["metric"] is not None]
    diverged = status == "diverged"
    best_metric = None
    if metrics:
        best_metric = max(metrics) if workload.higher_is_better else min(metrics)
    final = evals[-1] if evals and not diverged else None
    return {
        "status": status,
        # A diverged run's final loss is None (= +inf for comparisons): it did not finish.
        "final_val_loss": final["val_loss"] if final else None,
        "best_val_loss": min(losses) if losses else None,
        "final_metric": final["metric"] if final else None,
        "best_metric": best_metric,
        "final_extra": final["extra"] if final else {},
        "metric_name": workload.metric_name,
        "higher_is_better": bool(workload.higher_is_better),
        "val_loss_at": {
            # After a divergence there is no loss to report at later fractions.
            str(f): (None if diverged and f * config.budget_steps >= steps_run else
                     _value_at_fraction(evals, config.budget_steps, f))
            for f in BUDGET_FRACTIONS
        },
        # The eval curve is small (tens of points) and is what steps-to-target needs.
        "val_curve": [[e["step"], e["val_loss"]] for e in evals],
        "steps_run": steps_run,
        "wall_time_s": wall_time,
    }
