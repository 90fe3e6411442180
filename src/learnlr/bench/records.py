"""The benchmark's typed records: what a cell is (:class:`CellConfig`) and what it produced
(:class:`CellResult`).

Torch-free on purpose: the store, the summary and the report read and write these without
importing the training stack (the runner, torch, the schedule builders).

Example::

    >>> config = CellConfig("digits-cnn", "sgd", "cosine", seed=0, base_lr=0.1,
    ...                     budget_steps=300, eval_every=30)
    >>> CellConfig.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BUDGET_FRACTIONS", "HARNESS_VERSION", "CellConfig", "CellResult", "config_hash"]

# Bump when a change to the loop or to a schedule's settings in schedules.py makes old stored
# cells incomparable: it is part of every config hash, so old cells are then not reused.
HARNESS_VERSION = 2  # 2: greedy_step is budget-aware (GreedyLR(total_steps=budget))
BUDGET_FRACTIONS = (0.1, 0.5, 1.0)
"""Fractions of the budget at which a cell records its validation loss (``val_loss_at``)."""


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
