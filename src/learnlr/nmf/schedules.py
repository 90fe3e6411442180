"""The registry of LR schedules for the NMF solver (``learnlr nmf solve --schedule``, and the
hand-made side of :mod:`learnlr.rl.evaluation`).

An entry turns the run's budget into an :class:`NMFSchedule`: the initial LR as a fraction of
the initial stability bound plus a scheduler factory for :func:`learnlr.nmf.solve`. The learned
schedules (``rl``, ``rl_residual``) are added by :mod:`learnlr.rl.schedules` with
:func:`register_nmf_schedule`, so
this layer never imports the RL package.

Example:
    >>> spec = nmf_schedule("cosine", budget=100)
    >>> spec.name, spec.lr_fraction
    ('cosine', 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from learnlr.nmf.solver import StochasticNMF
from learnlr.plugins import load_schedule_providers

__all__ = ["NMF_SCHEDULES", "NMFSchedule", "nmf_schedule", "register_nmf_schedule",
           "step_decay"]

Factory = Callable[[torch.optim.Optimizer, StochasticNMF], Any]


@dataclass(frozen=True)
class NMFSchedule:
    """A named schedule for the NMF solver: initial LR (fraction of the initial bound) + factory."""

    name: str
    family: str
    """What comparisons group by (every step-decay configuration is family ``"step"``)."""
    lr_fraction: float
    factory: Factory | None
    """``factory(optimizer, nmf)`` builds the scheduler; None keeps the LR constant."""


def step_decay(lr_fraction: float, gamma: float, every: int) -> NMFSchedule:
    """``StepLR(step_size=every, gamma=gamma)`` from ``lr_fraction`` x the bound."""
    return NMFSchedule(
        f"step(lr0={lr_fraction},gamma={gamma},every={every})", "step", lr_fraction,
        lambda o, _n: torch.optim.lr_scheduler.StepLR(o, step_size=every, gamma=gamma))


def _greedy(budget: int) -> NMFSchedule:
    from learnlr.torch.greedy import GreedyLR

    # window=10: the paper's window of 50 is for runs of thousands of steps, not 400.
    return NMFSchedule("greedy", "greedy", 0.5, lambda o, _n: GreedyLR(o, window=10, patience=10))


NMF_SCHEDULES: dict[str, Callable[[int], NMFSchedule]] = {
    "constant": lambda budget: NMFSchedule("constant", "constant", 1.0, None),
    "step": lambda budget: step_decay(1.0, 0.3, max(1, budget // 4)),
    "cosine": lambda budget: NMFSchedule(
        "cosine", "cosine", 1.0,
        lambda o, _n: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=budget)),
    "greedy": _greedy,
}
"""Name -> ``budget -> NMFSchedule``."""


def register_nmf_schedule(name: str, make: Callable[[int], NMFSchedule]) -> None:
    """Add (or replace) the entry ``name``; how :mod:`learnlr.rl` adds ``rl``."""
    NMF_SCHEDULES[name] = make


def nmf_schedule(name: str, budget: int) -> NMFSchedule:
    """The registry entry ``name`` for a run of ``budget`` steps.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
    """
    if name not in NMF_SCHEDULES:
        raise ValueError(f"schedule must be one of {list(NMF_SCHEDULES)}, got {name!r}")
    return NMF_SCHEDULES[name](budget)


load_schedule_providers()  # learnlr.rl adds "rl" and "rl_residual" (see learnlr.plugins)
