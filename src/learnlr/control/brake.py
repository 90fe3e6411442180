"""The training-loss brake of the per-evaluation mode: one descent when training turns unstable.

The per-evaluation mode decides on the validation loss, once per evaluation (a few dozen times
per run). A too-large LR can blow a run up between two evaluations: on the full benchmark,
elec-forecast with SGD at 10x its tuned LR swung its training loss 3-4x above its best for 200
steps and then diverged, 240 steps after an evaluation that had set a new best. The brake
watches the per-step training loss: once its rolling mean (``window`` steps; the adapters use
the paper's 50, enough losses that noise alone does not double their mean) is above
``(1 + margin)`` times the best rolling mean so far, it asks for one descent, and at most one per
``window`` calls, so the mean can show the effect of the last. A mean at twice its best (the
default margin 1.0) is instability, not minibatch noise; the margin is a round choice, not tuned
(docs/greedylr.md, "Two signals").

``lost_progress`` (default 0: off) also asks that the mean be back that share of the way from
its best to its first value, a real loss of progress, which spares a near-zero, heavy-tailed
loss whose mean doubles on noise. 0.25 was tried: better on the sweep's seeds (digits-cnn/AdamW
at its tuned LR), worse on the benchmark's (reviews-imbalanced at 10x its tuned LR, where the
doubling brake's descents helped), so it is not the default.

>>> b = LossBrake(window=2)
>>> [b.push(v) for v in (1.0, 1.0, 1.0, 5.0, 5.0, 5.0)]
[False, False, False, True, False, True]

:class:`WarmupGuard` is the brake of the LR warmup, where neither the decisions nor the brake
look (the loss falls because the LR ramps). A ramp to a 10x too large LR is an LR range test
that nobody reads: on the full benchmark, SGD on char-lm at 10x its tuned LR blows up inside the
warmup for every schedule and every seed. The guard reads it: once the rolling mean of
``window`` (5: the warmup is short) training losses is above ``(1 + margin)`` times its best
*and* has given back at least ``lost_progress`` (half) of the progress it had made (from its
first value to its best: a blow-up or a network dying back to chance, not the early loss spike
of AdamW at a good LR, which doubles a small best and recovers), the warmup ends at once and the
LR restarts at ``backoff`` (0.1) times the LR the ramp had reached where that best mean was seen
(the range test's rule, fastai's ``lr_find``: a tenth of the LR at the loss minimum). It fires
at most once. :class:`learnlr.torch.clocked.ClockedGreedyLR` keeps it watching for as many steps
again after the warmup (``GUARD_WATCH``: the first steps at the peak LR, where SGD networks at
10x their tuned LR die faster than the brake's 50-step mean can see); a fire there multiplies
GreedyLR's LRs by the same restart (a best mean seen after the warmup counts at ramp 1).

>>> g = WarmupGuard(window=2)
>>> [g.push(v, ramp) for v, ramp in ((4.0, 0.1), (3.0, 0.2), (3.0, 0.3), (5.0, 0.4), (20.0, 0.5))]
[None, None, None, None, 0.03]

(the mean of 3.5 is the first, 3.0 the best; 4.0 has lost all the progress but is not twice
the best, 12.5 is both.)
"""

from __future__ import annotations

import math
from typing import Any

from learnlr.control.smoothing import RollingMean

DEFAULT_MARGIN = 1.0
DEFAULT_LOST_PROGRESS = 0.0
GUARD_WINDOW = 5
GUARD_BACKOFF = 0.1
GUARD_LOST_PROGRESS = 0.5
GUARD_WATCH = 2.0
"""The guard watches the warmup and as many steps again at the peak LR (in warmup lengths)."""


class LossBrake:
    """``push(loss)`` returns True when the caller should take one descent now."""

    def __init__(self, window: int, margin: float = DEFAULT_MARGIN,
                 lost_progress: float = DEFAULT_LOST_PROGRESS) -> None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (
            0.0 < margin < math.inf
        ):
            raise ValueError(f"brake margin must be a finite number > 0, got {margin!r}")
        if isinstance(lost_progress, bool) or not isinstance(lost_progress, (int, float)) or not (
            0.0 <= lost_progress <= 1.0
        ):
            raise ValueError(f"lost_progress must be a number in [0, 1], got {lost_progress!r}")
        self.margin = float(margin)
        # Also ask that the mean be back this share of the way from its best to its first
        # full-window value (0: off): a mean doubling near zero is noise, not a lost run.
        self.lost_progress = float(lost_progress)
        self.first: float | None = None
        self._mean = RollingMean(window)  # validates window
        self.best: float | None = None
        self.quiet = 0
        self.num_brakes = 0

    @property
    def window(self) -> int:
        return self._mean.size

    def values(self) -> list[float]:
        """The training losses in the window, oldest first."""
        return self._mean.values()

    def push(self, value: float) -> bool:
        """Record one training loss. Non-finite values are ignored (the run has diverged
        already, or the step was skipped): the brake acts before that."""
        if not math.isfinite(value):
            return False
        smoothed = self._mean.push(value)
        if len(self._mean) < self._mean.size:
            return False  # while the window fills its mean is a running mean, not comparable
        if self.quiet:
            self.quiet -= 1
        if self.first is None:
            self.first = smoothed
        if self.best is None or smoothed < self.best:
            self.best = smoothed
            return False
        if self.quiet or self.best <= 0.0 or smoothed <= (1.0 + self.margin) * self.best:
            return False  # "twice the best" means nothing for a loss that can reach 0 or less
        if smoothed - self.best <= self.lost_progress * (self.first - self.best):
            return False
        self.quiet = self._mean.size
        self.num_brakes += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON) state; a restored brake continues bit for bit."""
        return {"window": self._mean.state_dict(), "margin": self.margin, "best": self.best,
                "quiet": self.quiet, "num_brakes": self.num_brakes,
                "lost_progress": self.lost_progress, "first": self.first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._mean.load_state_dict(state["window"])
        self.margin = float(state["margin"])
        self.best = None if state["best"] is None else float(state["best"])
        self.quiet = int(state["quiet"])
        self.num_brakes = int(state["num_brakes"])
        self.lost_progress = float(state.get("lost_progress", 0.0))
        self.first = None if state.get("first") is None else float(state["first"])


class WarmupGuard:
    """``push(loss, ramp)`` during the LR warmup (``ramp``: the warmup's multiplier for the
    update whose loss it is) returns None, or once, when the loss blows up (its mean above twice
    its best and back half way to its first), the multiplier of the target LR to restart at
    without the rest of the warmup. The blow-up test is :class:`LossBrake`'s own, on a short
    window; the guard adds where the best mean was seen and what to restart at."""

    def __init__(self, window: int = GUARD_WINDOW, margin: float = DEFAULT_MARGIN,
                 backoff: float = GUARD_BACKOFF,
                 lost_progress: float = GUARD_LOST_PROGRESS) -> None:
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not (
            0.0 < backoff <= 1.0
        ):
            raise ValueError(f"guard backoff must be a number in (0, 1], got {backoff!r}")
        self.backoff = float(backoff)
        self._brake = LossBrake(window, margin, lost_progress)
        self.best_ramp = 0.0
        self.fired = False

    def push(self, value: float, ramp: float) -> float | None:
        if self.fired:
            return None
        brake = self._brake
        if math.isfinite(value):
            best = brake.best
            blow_up = brake.push(value)
            if brake.best != best:  # a new best mean: the ramp where it was seen
                self.best_ramp = float(ramp)
        else:
            # The run is blowing up now: an infinite mean passes both of the brake's tests
            # once there is a (positive) best to compare with.
            blow_up = brake.best is not None and brake.best > 0.0
        if not blow_up:
            return None
        self.fired = True
        return self.best_ramp * self.backoff

    def state_dict(self) -> dict[str, Any]:
        return {"brake": self._brake.state_dict(), "backoff": self.backoff,
                "best_ramp": self.best_ramp, "fired": self.fired}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._brake.load_state_dict(state["brake"])
        self.backoff = float(state["backoff"])
        self.best_ramp = float(state["best_ramp"])
        self.fired = bool(state["fired"])
