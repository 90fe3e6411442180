"""Residual LR control: a learned, bounded correction on top of the budget-aware GreedyLR.

The base (:data:`RESIDUAL_BASES`) is built exactly as the benchmark builds it: ``greedy_step``
(``GreedyLR(optimizer, total_steps=N)``, decisions on the per-step training loss) or
``greedy_eval_budget`` (``EvalGreedyLR(optimizer, total_steps=N)``: one decision per evaluation
on the validation loss, a training-loss brake). After every validation evaluation the policy
sets a multiplier ``m = exp(a * max_log_change)`` (``a`` in ``[-1, 1]``) and from then on every
update uses ``m x`` the base's own LR (its decisions, warmup and final anneal are unchanged
underneath).

Why residual: training starts from a strong schedule, and a zero action is the base itself. While
``m`` is exactly 1 the optimizer's LRs are never written here, so a zero policy reproduces the
base trajectory bit for bit (tested in the environment, in :class:`RLScheduler` and in the
benchmark runner).

Why decide at evaluations: the reward is the final validation loss, and the validation loss is
the signal GreedyLR's training-loss rule cannot see (on the workloads where the base loses at a
tuned LR, the validation loss stops following the training loss). A run that never evaluates
never calls :meth:`learnlr.rl.scheduler.RLScheduler.decide` (which records the validation loss
and acts, :meth:`GreedyResidual.record_validation` / :meth:`GreedyResidual.act`) and is exactly
the base.

One definition of the controller, shared by
:class:`learnlr.rl.residual_env.ResidualWorkloadEnv` (training) and
:class:`learnlr.rl.scheduler.RLScheduler` (use), so a policy sees the same observations in both.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import numpy as np
import torch
from torch.optim import Optimizer

from learnlr.rl.features import OBS_LIMIT, ObservationBuilder, check_feature_window

__all__ = ["RESIDUAL_BASES", "GreedyResidual", "build_base", "check_base",
           "residual_observation"]

_STATE_VERSION = 1

RESIDUAL_BASES = ("greedy_step", "greedy_eval_budget")
"""The benchmark schedules a residual policy can correct (a policy file names its own)."""


def check_base(base: str) -> str:
    """``base`` if it is one of :data:`RESIDUAL_BASES`, else a ValueError naming it."""
    if base not in RESIDUAL_BASES:
        raise ValueError(f"base must be one of {list(RESIDUAL_BASES)}, got {base!r}")
    return base


def build_base(base: str, optimizer: Optimizer, total_steps: int) -> Any:
    """The base scheduler exactly as the benchmark's schedule ``base`` builds it."""
    check_base(base)
    if base == "greedy_eval_budget":
        from learnlr.torch.clocked import EvalGreedyLR

        return EvalGreedyLR(optimizer, total_steps=total_steps)
    from learnlr.torch.greedy import GreedyLR

    return GreedyLR(optimizer, total_steps=total_steps)


def _log(x: float) -> float:
    return math.log(x) if x > 0 and math.isfinite(x) else -30.0


def residual_observation(features: ObservationBuilder, loss: float, grad_norm: float, lr: float,
                         initial_lr: float, fraction: float, action: float,
                         val_losses: list[float]) -> np.ndarray:
    """The residual observation: ``features``' 7 values plus the current correction and the
    validation features (``val_losses``: the run's validation losses so far, any order except
    that the first is the first and the last the latest; empty before the first)."""
    base = features.observe(loss, grad_norm, lr, initial_lr, fraction)
    val_ratio = val_rise = 0.0
    if val_losses:
        first, last = val_losses[0], val_losses[-1]
        val_ratio = (_log(last) - _log(first)) / 3.0
        val_rise = 10.0 * (_log(last) - _log(min(val_losses)))
    extra = np.array([action, val_ratio, val_rise], dtype=np.float64)
    extra = np.clip(np.nan_to_num(extra, nan=0.0), -OBS_LIMIT, OBS_LIMIT)
    return np.concatenate([base, extra.astype(np.float32)])


class GreedyResidual:
    """Budget-aware GreedyLR with a multiplicative correction set at each evaluation.

    Args:
        optimizer: the wrapped optimizer (its current LRs are the base LRs).
        total_steps: the run's length in optimizer steps (GreedyLR's budget).
        max_log_change: the correction is ``exp(a * max_log_change)``, so at most
            ``exp(max_log_change)`` either way.
        feature_window: losses in the variance feature.
        lower_only: positive actions act as 0: the correction only ever lowers GreedyLR's LR
            (which already climbs by itself).
        base: which GreedyLR is corrected (:data:`RESIDUAL_BASES`); with
            ``"greedy_eval_budget"`` each validation loss is also its one decision.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, *, max_log_change: float,
                 feature_window: int = 10, lower_only: bool = False,
                 base: str = "greedy_step") -> None:
        if not (0 < max_log_change <= 5):
            raise ValueError(f"max_log_change must be in (0, 5], got {max_log_change}")
        check_feature_window(feature_window)  # before the base touches the optimizer
        # Built first, right after the optimizer: exactly the bench's schedule `base` (which
        # build_base validates).
        self.greedy = build_base(base, optimizer, total_steps)
        self.base = base
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.max_log_change = max_log_change
        self.lower_only = lower_only
        self.initial_lr = float(self.greedy.base_lrs[0])
        self.features = ObservationBuilder(feature_window)
        self.multiplier = 1.0
        self.action = 0.0
        self.calls = 0
        self.loss = float("nan")
        self._scaled = False  # True while the optimizer holds m x GreedyLR's LRs (m != 1)
        self._scaled_from: list[float] | None = None  # the GreedyLR LR list last scaled
        self.val_first: float | None = None
        self.val_best: float | None = None
        self.val_last: float | None = None

    # -- per step ------------------------------------------------------------------------------
    def record(self, loss: SupportsFloat) -> None:
        """One optimizer step's training loss: GreedyLR steps, then the correction is applied."""
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self.greedy.step(value)
        if self.calls == 0:
            from learnlr.rl.scheduler import grad_norm_of

            self.features.reset(value, grad_norm_of(self.optimizer))
        else:
            self.features.record(value)
        self.loss = value
        self.calls += 1
        self._rescale()

    def _rescale(self) -> None:
        # GreedyLR publishes a new list whenever it writes the optimizer's LRs (a decision, the
        # warmup, the anneal); in between the optimizer still holds the scaled LRs: no write.
        if self._scaled and self.greedy.get_last_lr() is not self._scaled_from:
            self._write()

    def record_validation(self, val_loss: float) -> None:
        """A validation loss (after an evaluation): the base's decision when it decides on
        evaluations, and the observation's validation features."""
        if self.base == "greedy_eval_budget":
            self.greedy.decide(val_loss)  # as the bench's greedy_eval_budget: every value
            self._rescale()
        if not math.isfinite(val_loss):
            return
        if self.val_first is None:
            self.val_first = self.val_best = val_loss
        self.val_best = min(self.val_best, val_loss)
        self.val_last = val_loss

    # -- per decision --------------------------------------------------------------------------
    def observation(self) -> np.ndarray:
        """Features of :data:`learnlr.rl.features.GREEDY_RESIDUAL_FEATURE_NAMES` (float32)."""
        from learnlr.rl.scheduler import grad_norm_of

        lr = float(self.optimizer.param_groups[0]["lr"])
        vals = [] if self.val_last is None else [self.val_first, self.val_best, self.val_last]
        return residual_observation(self.features, self.loss, grad_norm_of(self.optimizer), lr,
                                    self.initial_lr, (self.calls - 1) / self.total_steps,
                                    self.action, vals)

    def act(self, action: float) -> None:
        """Set the correction to ``exp(action * max_log_change)`` (action clipped to [-1, 1])."""
        a = min(max(float(action), -1.0), 0.0 if self.lower_only else 1.0)
        if not math.isfinite(a):
            a = 0.0
        self.action = a
        self.multiplier = math.exp(a * self.max_log_change)
        if self._scaled or self.multiplier != 1.0:
            self._write()

    def _write(self) -> None:
        """The optimizer's LRs = GreedyLR's LRs for the next update x the correction."""
        m = self.multiplier
        self._scaled_from = self.greedy.get_last_lr()
        for group, lr in zip(self.optimizer.param_groups, self._scaled_from):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr * m)
            else:
                group["lr"] = lr * m
        self._scaled = m != 1.0

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (GreedyLR's own state included)."""
        return {
            "version": _STATE_VERSION, "greedy": self.greedy.state_dict(),
            "features": self.features.state_dict(), "multiplier": self.multiplier,
            "action": self.action, "calls": self.calls,
            # None for NaN (no loss yet) or a non-finite loss: strict JSON has no NaN.
            "loss": self.loss if math.isfinite(self.loss) else None,
            "scaled": self._scaled, "val": [self.val_first, self.val_best, self.val_last],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; the optimizer's LRs are rewritten as they were."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"GreedyResidual state version {state.get('version')!r} is not "
                             f"supported (expected {_STATE_VERSION})")
        self.greedy.load_state_dict(state["greedy"])
        self.features.load_state_dict(state["features"])
        self.multiplier = float(state["multiplier"])
        self.action = float(state["action"])
        self.calls = int(state["calls"])
        # None stood for NaN or +-inf: the observation takes the same value for all three (the
        # features log a non-finite loss as -30), so reading NaN back resumes exactly.
        self.loss = math.nan if state["loss"] is None else float(state["loss"])
        self.val_first, self.val_best, self.val_last = state["val"]
        self._scaled = bool(state["scaled"])
        self._rescale()
