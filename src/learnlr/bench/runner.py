"""One benchmark cell = one training run of (workload, optimizer, schedule, seed).

The runner owns the loop, seeding, timing and evaluation (AlgoPerf's split); the workload owns
data, model, loss and metric. Everything is a function of the cell's config, so the same config
gives the same numbers in any process (local pool or Ray worker): each run pins torch to one
thread and seeds torch, numpy and ``random`` from the cell's seed.

Example::

    config = CellConfig("digits-cnn", "sgd", "greedy_step", seed=0, base_lr=0.1,
                        budget_steps=300, eval_every=30)
    result = run_cell(config)
    result.summary["final_val_loss"], result.trajectory_lr[:3]
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from learnlr.bench.schedules import build_schedule, effective_lr
from learnlr.bench.workloads.base import Workload

# Bump when a change to the loop or to a schedule's settings in schedules.py makes old stored
# cells incomparable: it is part of every config hash, so old cells are then not reused.
HARNESS_VERSION = 2  # 2: greedy_step is budget-aware (GreedyLR(total_steps=budget))
BUDGET_FRACTIONS = (0.1, 0.5, 1.0)


@dataclass(frozen=True)
class CellConfig:
    """Everything that determines a cell's numbers (all of it goes into the config hash)."""

    workload: str
    optimizer: str
    schedule: str
    seed: int
    base_lr: float
    budget_steps: int
    eval_every: int
    fingerprint: str = ""
    """Digest of files the schedule reads (``schedules.schedule_fingerprint``; ``""``: none)."""
    lr_scale: float = 1.0
    """LR track: the run uses ``base_lr * lr_scale`` (0.1 / 10: a base LR 10x too small / large)."""

    @property
    def lr(self) -> float:
        """The LR the schedule starts from: the tuned base LR times the track's scale."""
        return self.base_lr * self.lr_scale

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-able dict, including the harness version.

        An empty ``fingerprint`` and an ``lr_scale`` of 1 are left out, so cells keep the hashes
        they had before those fields existed.
        """
        data = {**asdict(self), "harness": HARNESS_VERSION}
        if not self.fingerprint:
            del data["fingerprint"]
        if self.lr_scale == 1.0:  # the tuned track keeps the hashes it had before tracks existed
            del data["lr_scale"]
        return data

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_json` (sorted keys, no spaces)."""
        return config_hash(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellConfig:
        """Inverse of :meth:`to_json` (the harness version is dropped)."""
        return cls(
            workload=str(data["workload"]),
            optimizer=str(data["optimizer"]),
            schedule=str(data["schedule"]),
            seed=int(data["seed"]),
            base_lr=float(data["base_lr"]),
            budget_steps=int(data["budget_steps"]),
            eval_every=int(data["eval_every"]),
            fingerprint=str(data.get("fingerprint", "")),
            lr_scale=float(data.get("lr_scale", 1.0)),
        )


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``config``."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CellResult:
    """What one run produced: scalar measures, per-step trajectory and the eval history."""

    config: CellConfig
    summary: dict[str, Any]
    trajectory_lr: list[float | None] = field(default_factory=list)
    trajectory_train_loss: list[float | None] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


def load_workloads(plugins: Iterable[str] = ()) -> dict[str, Any]:
    """Name -> workload class or instance, from the built-in registry and plugin modules.

    A plugin is an importable module that defines ``WORKLOADS: dict[str, type[Workload]]``;
    it lets users (and the tests) benchmark their own workloads with the same harness.
    """
    registry: dict[str, Any] = {}
    try:
        builtin = importlib.import_module("learnlr.bench.workloads")
        registry.update(getattr(builtin, "WORKLOADS", {}))
    except ModuleNotFoundError as exc:  # a workload's optional data package is missing
        if exc.name and exc.name.startswith("learnlr"):
            raise
    for module_name in plugins:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"plugin module {module_name!r} cannot be imported: {exc}") from exc
        extra = getattr(module, "WORKLOADS", None)
        if not isinstance(extra, Mapping):
            raise ValueError(
                f"plugin module {module_name!r} must define WORKLOADS: dict[str, Workload class]"
            )
        registry.update(extra)
    return registry


_INSTANCES: dict[str, Workload] = {}  # per process, so a workload's data cache is reused


def get_workload_instance(name: str, plugins: Iterable[str] = ()) -> Workload:
    """A (cached) workload instance by name; raises ValueError listing the valid names."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    registry = load_workloads(plugins)
    if name not in registry:
        raise ValueError(f"workload {name!r} is unknown; valid workloads: {sorted(registry)}")
    entry = registry[name]
    instance = entry() if isinstance(entry, type) else entry
    _INSTANCES[name] = instance
    return instance


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


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


def run_cell(config: CellConfig, plugins: Iterable[str] = ()) -> CellResult:
    """Train one cell and return its measures; never raises on divergence (status "diverged")."""
    torch.set_num_threads(1)
    workload = get_workload_instance(config.workload, plugins)
    generator = _seed_everything(config.seed)
    workload.setup(config.seed)
    model = workload.make_model(config.seed)
    optimizer, hooks = build_schedule(
        config.schedule,
        model.parameters(),
        config.optimizer,
        base_lr=config.lr,
        budget_steps=config.budget_steps,
        eval_every=config.eval_every,
    )
    lrs: list[float | None] = []
    train_losses: list[float | None] = []
    evals: list[dict[str, Any]] = []
    status = "ok"

    def evaluate(step: int) -> float:
        if hooks.eval_mode is not None:
            hooks.eval_mode()
        model.eval()
        with torch.no_grad():
            result = workload.evaluate(model)
        model.train()
        if hooks.train_mode is not None:
            hooks.train_mode()
        val_loss = float(result.loss)
        evals.append(
            {
                "step": step,
                "val_loss": _finite(val_loss),
                "metric": _finite(float(result.metric)),
                "extra": {k: _finite(float(v)) for k, v in result.extra.items()},
            }
        )
        return val_loss

    start, start_cpu = time.perf_counter(), time.process_time()
    model.train()
    if hooks.train_mode is not None:
        hooks.train_mode()
    for step in range(config.budget_steps):
        batch = workload.batch(step, generator)
        if hooks.needs_closure:
            loss = optimizer.step(lambda batch=batch: workload.loss(model, batch))
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = workload.loss(model, batch)
            loss.backward()
            optimizer.step()
        train_loss = float(loss.detach())
        # The LR that this step used (HD and SLS set it inside step(), schedulers after it).
        # None for a non-finite LR (an HD optimizer can produce one just before diverging).
        lrs.append(_finite(effective_lr(optimizer)))
        train_losses.append(_finite(train_loss))
        if not math.isfinite(train_loss):
            status = "diverged"
            break
        if hooks.step_on == "step":
            hooks.scheduler.step()
        elif hooks.step_on == "step_loss":
            hooks.scheduler.step(train_loss)
        done = step + 1
        if done % config.eval_every == 0 or done == config.budget_steps:
            val_loss = evaluate(done)
            if not math.isfinite(val_loss):
                status = "diverged"
                break
            if hooks.step_on == "eval_loss":
                hooks.scheduler.step(val_loss)
    wall_time = time.perf_counter() - start
    cpu_time = time.process_time() - start_cpu  # unaffected by other processes on the machine

    summary = _measures(config, workload, evals, status, wall_time, len(lrs))
    summary["cpu_time_s"] = cpu_time
    return CellResult(config, summary, lrs, train_losses, evals)


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
