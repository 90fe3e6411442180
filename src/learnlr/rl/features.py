"""The observation a learning-rate policy sees: shared by :class:`LRControlEnv` (training) and
:class:`RLScheduler` (inference), so a policy sees identical features in both places.

No torch, no gymnasium: plain numpy, so it can be unit-tested and reused anywhere.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FEATURE_NAMES", "FEATURE_SETS", "GREEDY_RESIDUAL_FEATURE_NAMES",
           "NMF_RESIDUAL_FEATURE_NAMES", "OBS_LIMIT", "ObservationBuilder",
           "check_feature_window"]

FEATURE_NAMES = (
    "log_loss_ratio",  # log(loss / initial loss) / 10
    "delta_fast",  # EMA (alpha 0.5) of the per-decision change in log loss, x10
    "delta_slow",  # EMA (alpha 0.1) of the same, x10
    "log_loss_std",  # log10 of the std of log loss over the last window of metrics, / 4
    "log_grad_ratio",  # log(grad norm / initial grad norm) / 10
    "log_relative_lr",  # log(lr / stability bound), or log(lr / initial lr) without a bound; / 3
    "budget_fraction",  # fraction of the step budget used, in [0, 1]
)
GREEDY_RESIDUAL_FEATURE_NAMES = FEATURE_NAMES + (
    "correction",  # the current LR multiplier over the base schedule, log / log(max correction)
    "log_val_ratio",  # log(latest validation loss / first one) / 3; 0 before the first
    "val_rise",  # log(latest validation loss / lowest so far) x 10; 0 before the first
)
"""Observation of a residual policy over the budget-aware GreedyLR
(:mod:`learnlr.rl.residual`): :data:`FEATURE_NAMES` (with ``log_relative_lr`` relative to the
initial LR) plus the correction and the validation losses the run has seen."""
NMF_RESIDUAL_FEATURE_NAMES = FEATURE_NAMES + (
    "correction",  # the current LR multiplier over the base schedule, log / log(max correction)
    "log_base_relative_lr",  # log(base schedule's LR / stability bound) / 3
)
"""Observation of a residual policy over an NMF base schedule (:mod:`learnlr.rl.nmf_residual`):
:data:`FEATURE_NAMES` (``log_relative_lr`` is the corrected LR over the bound) plus the
correction and where the base schedule itself stands relative to the bound (so the policy sees
the base's drops coming and going)."""
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "direct": FEATURE_NAMES, "greedy_residual": GREEDY_RESIDUAL_FEATURE_NAMES,
    "nmf_residual": NMF_RESIDUAL_FEATURE_NAMES,
}
"""Observation layout of each policy ``kind`` (:class:`learnlr.rl.policy.PolicyConfig`):
``"direct"`` policies set the LR themselves from :data:`FEATURE_NAMES`; residual policies
correct a base schedule and see more."""
OBS_LIMIT = 5.0
"""Every feature is clipped to ``[-OBS_LIMIT, OBS_LIMIT]`` (the observation space's box)."""


def check_feature_window(value: Any) -> int:
    """``value`` if it is an integer >= 2 (bools are not), else a ValueError naming
    ``feature_window``: the variance feature needs two losses. Checked where the setting is
    given (environments, policy configs), not at the first ``reset()``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"feature_window must be an integer >= 2, got {value!r}")
    return value


def _safe_log(x: float) -> float:
    return math.log(x) if x > 0 and math.isfinite(x) else -30.0


@dataclass
class _State:
    loss0: float = 1.0
    grad0: float = 1.0
    last_log_loss: float = 0.0
    delta_fast: float = 0.0
    delta_slow: float = 0.0


class ObservationBuilder:
    """Turns a stream of (loss, grad norm, lr, bound, budget fraction) into a feature vector.

    Args:
        window: how many recent per-step losses enter the variance feature.
    """

    dim = len(FEATURE_NAMES)

    def __init__(self, window: int = 10) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self._recent: deque[float] = deque(maxlen=window)
        self._state = _State()
        self._started = False

    def reset(self, loss: float, grad_norm: float) -> None:
        """Start a new run whose first measured loss and gradient norm are given."""
        self._state = _State(
            loss0=loss if loss > 0 and math.isfinite(loss) else 1.0,
            grad0=grad_norm if grad_norm > 0 and math.isfinite(grad_norm) else 1.0,
            last_log_loss=_safe_log(loss),
        )
        self._recent.clear()
        self._recent.append(_safe_log(loss))
        self._started = True

    def record(self, loss: float) -> None:
        """Add one per-step loss (between decisions) to the variance window."""
        self._recent.append(_safe_log(loss))

    def observe(
        self, loss: float, grad_norm: float, lr: float, reference_lr: float, budget_fraction: float
    ) -> np.ndarray:
        """Feature vector at a decision point (float32, clipped to ``OBS_LIMIT``).

        ``reference_lr`` is the stability bound when there is one, else the initial LR.
        """
        if not self._started:
            self.reset(loss, grad_norm)
        s = self._state
        log_loss = _safe_log(loss)
        delta = log_loss - s.last_log_loss
        s.delta_fast = 0.5 * s.delta_fast + 0.5 * delta
        s.delta_slow = 0.9 * s.delta_slow + 0.1 * delta
        s.last_log_loss = log_loss
        std = float(np.std(self._recent)) if len(self._recent) > 1 else 0.0
        features = np.array(
            [
                (log_loss - _safe_log(s.loss0)) / 10.0,
                10.0 * s.delta_fast,
                10.0 * s.delta_slow,
                math.log10(std + 1e-8) / 4.0,
                (_safe_log(grad_norm) - _safe_log(s.grad0)) / 10.0,
                (_safe_log(lr) - _safe_log(reference_lr)) / 3.0,
                min(max(budget_fraction, 0.0), 1.0),
            ],
            dtype=np.float64,
        )
        features = np.nan_to_num(features, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT)
        return np.clip(features, -OBS_LIMIT, OBS_LIMIT).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (for :meth:`RLScheduler.state_dict`)."""
        s = self._state
        return {
            "window": self.window,
            "recent": list(self._recent),
            "started": self._started,
            "loss0": s.loss0,
            "grad0": s.grad0,
            "last_log_loss": s.last_log_loss,
            "delta_fast": s.delta_fast,
            "delta_slow": s.delta_slow,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        if int(state["window"]) != self.window:
            raise ValueError(f"window mismatch: state has {state['window']}, builder {self.window}")
        self._recent = deque((float(v) for v in state["recent"]), maxlen=self.window)
        self._started = bool(state["started"])
        self._state = _State(
            loss0=float(state["loss0"]),
            grad0=float(state["grad0"]),
            last_log_loss=float(state["last_log_loss"]),
            delta_fast=float(state["delta_fast"]),
            delta_slow=float(state["delta_slow"]),
        )
