"""GreedyLR as a framework-free state machine.

Given one metric per call, the controller decides whether the learning rates go up (divide by
``factor``), down (multiply by ``factor``), back to their initial values (reset), or stay. It knows
nothing about torch, JAX or any trainer: the torch scheduler, the optax transformation, the RL
environment and the Trainer callbacks all wrap this one class.

Semantics (see docs/greedylr.md for the comparison with the paper's Alg. 2 and transformers):

* The metric (optionally the rolling mean of the last ``window`` finite metrics) is compared with
  the running *best* value; "better" means beating it by ``threshold`` (relative to ``abs(best)``
  in ``"rel"`` mode, so negative metrics work).
* More than ``patience`` consecutive better calls -> increase; more than ``patience`` consecutive
  non-better calls -> decrease. The counter that fired restarts from zero.
* ``keep_decreasing`` / ``keep_increasing`` are Amazon's article's "cooldown" / "warmup" stages
  (renamed: they are *not* an LR warmup; that is ``warmup_steps`` of the budget envelope in
  :mod:`learnlr.control.budget`): after a decrease the controller keeps decreasing for
  ``keep_decreasing`` more calls, after an increase it keeps increasing for ``keep_increasing``
  more calls, whatever the metric does. A non-finite metric ends a keep-increasing run at once.
* A non-finite metric (NaN, +-Inf) never raises, never enters the window or the best value, and
  counts as a non-better call.
* ``increase_every``: only every n-th increase decision is taken (the others hold, counters
  restart as after an increase): a climb needs n times the evidence of a descent. 1 (default)
  is the paper's rule; the budget-aware defaults use 2 (docs/greedylr.md).
* ``accelerate``: the k-th decrease decided since the last better call multiplies the LR by
  ``factor ** k`` (Rprop's growing step for a sign that persists): a streak of n decreases moves
  the LR by ``factor ** (n (n + 1) / 2)``, while an isolated one still costs one ``factor``.
  Decreases applied from outside (a brake's) stay one ``factor``. Off by default; the
  per-evaluation budget defaults use it (docs/greedylr.md).
* ``climb_on_speedup``: in a run of better calls, one that improves on the previous call by at
  least as much as that call improved on the one before (``v[k-1] - v[k] >= v[k-2] - v[k-1]``,
  three better calls in a row) is an increase at once, beside the ``increase_every`` votes (whose
  count it leaves alone); with ``patience`` > 0 only a call that casts a vote can be one. Gains
  are measured from the best (not the threshold's bar); a non-better call ends the run, a
  descent from outside (a brake's) does not. A curve that does not slow down is one whose LR is
  not yet the limit, and after the climb the same test asks whether the climb paid off. Off by
  default; the per-evaluation budget defaults use it (docs/greedylr.md, "Climbs while the curve
  does not slow down").
* ``spike_ceiling``: a call at least twice as bad as the best (a loss at twice its best, a
  positive metric in ``"max"`` mode at half its best, or a non-finite value) marks the learning
  rates it was measured at as too large: no later increase reaches them (it holds instead).
  "Twice the best" is the training-loss brake's instability (:mod:`learnlr.control.brake`), here
  on the decided metric. A climb back to an LR that has already blown the loss up once is the
  one climb with evidence against it (docs/greedylr.md, "No climb back to an LR that spiked").
  Off by default; the per-evaluation budget defaults use it.
* ``reset_after``: after that many decreases attempted while every group already sat at its
  ``min_lr``, the learning rates return to their initial values and all state is cleared.
  An increase restarts that count.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from learnlr.control.smoothing import RollingMean

HOLD = 0
INCREASE = 1
DECREASE = -1
RESET = 2

SPIKE_RATIO = 2.0
"""``spike_ceiling``: a value this many times worse than the best marks its LR as too large."""
# A climb reaches a ceiling within this relative tolerance (an LR descended by ``factor`` and
# climbed back is the same LR up to rounding).
_SAME_LR = 1e-9

PER_EVAL: dict[str, float | int] = {"window": 1, "patience": 2, "factor": 0.8}
"""The defaults for stepping once per *evaluation* on a validation metric without a budget (the
reactive rule: the eval modes with ``total_steps=None`` and the benchmark's ``greedy_eval``; with a
budget, :data:`learnlr.control.schedule.BUDGET_PER_EVAL`). A run has ~10-30 evaluations, so the
per-step defaults (window 50, patience 10) would never act: no smoothing, act after 3 consecutive
calls, and a 0.8 step move the LR 2x in about 10 evaluations."""

# State dicts written before the article's stages were renamed.
_RENAMED_FIELDS = {"cooldown": "keep_decreasing", "warmup": "keep_increasing",
                   "cooldown_left": "decreases_left", "warmup_left": "increases_left"}


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """A controller state with the pre-rename keys (cooldown / warmup) mapped to today's."""
    state = {_RENAMED_FIELDS.get(k, k): v for k, v in state.items()}
    state["config"] = {_RENAMED_FIELDS.get(k, k): v for k, v in state["config"].items()}
    return state

# Keys every controller state has (older ones lack only the later, optional ones).
_STATE_KEYS = ("best", "last_value", "num_good", "num_bad", "decreases_left", "increases_left",
               "min_attempts", "num_calls", "num_resets", "window")

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _check_count(name: str, value: object, minimum: int = 0) -> int:
    # operator.index accepts int-likes (numpy integers) but not floats or bools-as-floats.
    try:
        as_int = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        as_int = None
    if as_int is None or as_int < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return as_int


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class GreedyConfig:
    """GreedyLR's hyperparameters, validated once at construction.

    Defaults follow the paper's runs (factor 0.95, patience 10, window 50 on the per-step
    training loss); see the README for the evidence behind each.
    """

    mode: str = "min"
    """``"min"`` for a loss, ``"max"`` for an accuracy-like metric."""
    factor: float = 0.95
    """Multiplicative step F in (0, 1): decrease multiplies the LR by F, increase divides by F."""
    patience: int = 10
    """Act after more than this many consecutive better (or non-better) calls."""
    threshold: float = 0.0
    """Minimum improvement over the best value that counts as better (>= 0)."""
    threshold_mode: str = "rel"
    """``"rel"``: improvement measured as a fraction of ``abs(best)``; ``"abs"``: in metric units."""
    keep_decreasing: int = 0
    """After a decrease, keep decreasing for this many more calls (the article's "cooldown")."""
    keep_increasing: int = 0
    """After an increase, keep increasing for this many more calls (the article's "warmup" stage;
    not an LR warmup)."""
    window: int = 50
    """Compare the rolling mean of the last ``window`` finite metrics (1 = no smoothing)."""
    reset_after: int | None = None
    """Reset to the initial LRs after this many decreases attempted at ``min_lr`` (None: never)."""
    increase_every: int = 1
    """Take only every n-th increase decision (the others hold): climbs need n times the evidence
    of descents. 1 is the paper's rule."""
    accelerate: bool = False
    """The k-th decrease since the last better call multiplies the LR by ``factor ** k``."""
    climb_on_speedup: bool = False
    """A better call that votes for a climb and gains at least as much as the better call before
    it is an increase at once (see the module docstring)."""
    spike_ceiling: bool = False
    """A call at least twice as bad as the best caps every later increase below the LRs it was
    measured at (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(
                f"threshold_mode must be one of {_THRESHOLD_MODES}, got {self.threshold_mode!r}"
            )
        factor = self.factor
        if not _is_real(factor) or not 0.0 < factor < 1.0:
            # `not 0 < x < 1` is also True for NaN, so NaN is rejected here.
            raise ValueError(f"factor must be a number in the open interval (0, 1), got {factor!r}")
        threshold = self.threshold
        if not _is_real(threshold) or not 0.0 <= threshold < math.inf:
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
        # Normalise numpy scalars to plain Python numbers (the state must stay JSON).
        object.__setattr__(self, "factor", float(factor))
        object.__setattr__(self, "threshold", float(threshold))
        for name in ("patience", "keep_decreasing", "keep_increasing"):
            object.__setattr__(self, name, _check_count(name, getattr(self, name)))
        object.__setattr__(self, "window", _check_count("window", self.window, minimum=1))
        object.__setattr__(
            self, "increase_every", _check_count("increase_every", self.increase_every, minimum=1))
        for name in ("accelerate", "climb_on_speedup", "spike_ceiling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.reset_after is not None:
            object.__setattr__(
                self, "reset_after", _check_count("reset_after", self.reset_after, minimum=1)
            )


def broadcast_bound(
    name: str, value: float | Sequence[float] | None, initial: Sequence[float], default_ratio: float
) -> list[float]:
    """Per-group bound from a float, a per-group sequence, or None (= ratio x initial LR)."""
    n = len(initial)
    if value is None:
        return [default_ratio * lr for lr in initial]
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name} has {len(value)} entries ({list(value)!r}), expected one per parameter "
                f"group ({n})"
            )
        values = list(value)
    else:
        values = [value] * n
    out = []
    for i, v in enumerate(values):
        if not _is_real(v) or not 0.0 <= v < math.inf:
            where = f"{name}[{i}]" if isinstance(value, (list, tuple)) else name
            raise ValueError(f"{where} must be a finite number >= 0, got {v!r}")
        out.append(float(v))
    return out


class GreedyController:
    """The GreedyLR decision state machine over a list of per-group learning rates.

    >>> c = GreedyController(GreedyConfig(patience=0, window=1), [0.1], max_lr=1.0)
    >>> c.update(1.0), c.update(0.5)   # each beats the best so far; patience 0 acts at once
    (1, 1)
    >>> c.lrs[0] > 0.1
    True

    ``update(value)`` returns the decision (HOLD, INCREASE, DECREASE or RESET) and applies it to
    :attr:`lrs`. Adapters that let someone else change the LRs between calls (torch optimizers)
    pass the current values as ``lrs=`` so decisions scale what is really there.
    """

    def __init__(
        self,
        config: GreedyConfig,
        initial_lrs: Sequence[float],
        min_lr: float | Sequence[float] | None = None,
        max_lr: float | Sequence[float] | None = None,
        *,
        min_lr_ratio: float = 0.1,
        max_lr_ratio: float = 1.0,
    ) -> None:
        initial = [float(lr) for lr in initial_lrs]
        if not initial:
            raise ValueError("initial_lrs must hold at least one learning rate")
        for i, lr in enumerate(initial):
            if not 0.0 <= lr < math.inf:
                raise ValueError(f"initial lr of group {i} must be a finite number >= 0, got {lr!r}")
        self.initial_lrs = initial
        self.min_lrs = broadcast_bound("min_lr", min_lr, initial, min_lr_ratio)
        self.max_lrs = broadcast_bound("max_lr", max_lr, initial, max_lr_ratio)
        for i, (lo, hi, lr) in enumerate(zip(self.min_lrs, self.max_lrs, initial)):
            if lr > hi:  # before lo > hi: a max_lr under the LR also sits under the default min_lr
                raise ValueError(
                    f"max_lr ({hi!r}) must be >= the initial lr ({lr!r}) of group {i}"
                )
            if lo > hi:
                raise ValueError(f"min_lr ({lo!r}) must be <= max_lr ({hi!r}) for group {i}")
            if not lo <= lr <= hi:
                raise ValueError(
                    f"initial lr {lr!r} of group {i} lies outside [min_lr, max_lr] = [{lo!r}, {hi!r}]"
                )
        self._configure(config)
        self.lrs = list(initial)
        self._clear()
        self.num_calls = 0
        self.num_resets = 0

    def _set_best(self, best: float | None) -> None:
        """Store the best value (internal sign) and the bar a value must get below to beat it."""
        self._best = best
        if best is None:
            self._bar = math.inf
        elif self._rel:
            self._bar = best - self._threshold * abs(best)
        else:
            self._bar = best - self._threshold

    @property
    def best(self) -> float | None:
        """Best (smoothed) metric seen so far, in the metric's own sign; None before any."""
        b = self._best
        return b if b is None or self._sign > 0 else -b

    def _configure(self, config: GreedyConfig) -> None:
        # Hot-path copies of the config. In "max" mode metrics are negated internally, so
        # "better" is always "below the bar" and step() does one float comparison.
        self.config = config
        self._factor = float(config.factor)
        self._patience = config.patience
        self._increase_every = config.increase_every
        self._sign = 1.0 if config.mode == "min" else -1.0
        self._rel = config.threshold_mode == "rel"
        self._threshold = float(config.threshold)
        self._window = RollingMean(config.window) if config.window > 1 else None
        self._speedup = config.climb_on_speedup
        self._spike_ceiling = config.spike_ceiling

    def _clear(self) -> None:
        self._set_best(None)
        self.num_good = 0
        self.num_bad = 0
        self.decreases_left = 0
        self.increases_left = 0
        self.increase_votes = 0
        self.min_attempts = 0
        self.descent_streak = 0  # decreases decided since the last better call (accelerate)
        self.descent_power = 1  # factors the next DECREASE applies (observe sets, apply spends)
        # climb_on_speedup: whether the last call was better, and its gain over the call before
        # (None unless both were better).
        self.last_better = False
        self.last_gain: float | None = None
        self.last_value: float | None = None
        # spike_ceiling: the lowest LRs a spike was measured at (None: no spike yet).
        self.ceiling_lrs: list[float] | None = None
        if self._window is not None:
            self._window.clear()

    # ------------------------------------------------------------------ decisions
    def observe(self, value: float) -> int:
        """Record one metric and return the decision, without touching the learning rates."""
        self.num_calls += 1
        if value - value == 0.0:  # finite (NaN - NaN and inf - inf are NaN); cheaper than isfinite
            if self._sign < 0:
                value = -value
            if self._window is not None:
                value = self._window.push(value)
            self.last_value = value if self._sign > 0 else -value
            speedup = self._speedup and self._is_speedup(value)
            if self._spike_ceiling and self._is_spike(value):
                self._mark_ceiling()
            if value < self._bar:
                # _set_best(value), inline: this runs on most calls of an improving run.
                self._best = value
                self._bar = value - self._threshold * abs(value) if self._rel else (
                    value - self._threshold)
                self.num_good += 1
                self.num_bad = 0
                self.descent_streak = 0
            else:
                self.num_bad += 1
                self.num_good = 0
        else:
            speedup = False
            if self._speedup:
                self.last_better, self.last_gain = False, None
            if self._spike_ceiling:  # a blown-up metric is the worst spike
                self._mark_ceiling()
            self.num_bad += 1
            self.num_good = 0
            self.increases_left = 0  # never keep raising the LR into a diverging loss

        if self.decreases_left:
            self.decreases_left -= 1
            self.num_good = self.num_bad = 0
            return self._decrease()
        if self.increases_left:
            self.increases_left -= 1
            self.num_good = self.num_bad = 0
            return self._climb()
        if self.num_good > self._patience:
            self.num_good = 0
            self.increase_votes += 1
            if self.increase_votes < self._increase_every:
                if speedup:  # a climb now; the votes keep counting toward the next one
                    self.increases_left = self.config.keep_increasing
                    return self._climb()
                return HOLD  # a vote for a climb, not yet enough evidence
            self.increase_votes = 0
            self.increases_left = self.config.keep_increasing
            return self._climb()
        if self.num_bad > self._patience:
            self.num_bad = 0
            self.decreases_left = self.config.keep_decreasing
            return self._decrease()
        return HOLD

    def _is_spike(self, value: float) -> bool:
        """Whether ``value`` (smoothed, internal sign) is at least twice as bad as the best, in
        the metric's own scale: a loss at twice its best, a positive ``"max"`` metric at half."""
        best = self._best
        if best is None:
            return False
        if self._sign > 0:
            return best > 0.0 and value >= SPIKE_RATIO * best
        return best < 0.0 and value >= best / SPIKE_RATIO

    def _mark_ceiling(self) -> None:
        """The current LRs blew the metric up: no later increase may reach them."""
        ceiling = self.ceiling_lrs
        self.ceiling_lrs = list(self.lrs) if ceiling is None else [
            min(lr, c) for lr, c in zip(self.lrs, ceiling)]

    def _climb(self) -> int:
        """INCREASE, or HOLD (ending a keep-increasing run) where dividing any group's LR by
        ``factor`` would reach the LR a spike was measured at (``spike_ceiling``)."""
        ceiling = self.ceiling_lrs
        if ceiling is not None:
            f = self._factor * (1.0 - _SAME_LR)
            if any(lr >= c * f for lr, c in zip(self.lrs, ceiling)):
                self.increases_left = 0
                return HOLD
        return INCREASE

    def _is_speedup(self, value: float) -> bool:
        """Track the gains of consecutive better calls (``value``: smoothed, internal sign) and
        say whether this call's gain is at least the previous one's."""
        if not value < self._bar:
            self.last_better, self.last_gain = False, None
            return False
        gain = self._best - value if self.last_better else None  # last_better: a best exists
        previous, self.last_gain, self.last_better = self.last_gain, gain, True
        return gain is not None and previous is not None and gain >= previous

    def _decrease(self) -> int:
        """A DECREASE decided by :meth:`observe`; with ``accelerate`` the next :meth:`apply` of
        it spends ``factor ** k`` (k: its rank in the streak since the last better call)."""
        if self.config.accelerate:
            self.descent_streak += 1
            self.descent_power = self.descent_streak
        return DECREASE

    def apply(self, decision: int, lrs: Sequence[float] | None = None) -> int:
        """Apply ``decision`` to ``lrs`` (default: :attr:`lrs`) and store the result in :attr:`lrs`.

        Returns the decision actually taken: a DECREASE attempted at ``min_lr`` for the
        ``reset_after``-th time becomes a RESET.
        """
        current = self.lrs if lrs is None else [float(lr) for lr in lrs]
        if len(current) != len(self.initial_lrs):
            raise ValueError(
                f"got {len(current)} learning rates but the scheduler was built for "
                f"{len(self.initial_lrs)} parameter groups (a group added after construction is "
                "not scheduled: build the scheduler after adding every group)"
            )
        if decision == DECREASE:
            reset_after = self.config.reset_after
            if reset_after is not None and all(lr <= lo for lr, lo in zip(current, self.min_lrs)):
                self.min_attempts += 1
                if self.min_attempts >= reset_after:
                    return self.apply(RESET)
            f = self._factor
            power, self.descent_power = self.descent_power, 1
            # Clamp on both sides: an LR set out of bounds by someone else comes back in range.
            for _ in range(power):
                current = [min(max(lr * f, lo), hi)
                           for lr, lo, hi in zip(current, self.min_lrs, self.max_lrs)]
            self.lrs = current
        elif decision == INCREASE:
            self.min_attempts = 0
            f = self._factor
            self.lrs = [
                max(min(lr / f, hi), lo) for lr, lo, hi in zip(current, self.min_lrs, self.max_lrs)
            ]
        elif decision == RESET:
            self._clear()
            self.num_resets += 1
            self.lrs = list(self.initial_lrs)
        else:
            self.lrs = list(current)
        return decision

    def update(self, value: float, lrs: Sequence[float] | None = None) -> int:
        """Observe ``value`` and apply the decision. Returns the decision taken (see :meth:`apply`)."""
        decision = self.observe(value)
        if decision == HOLD:
            return HOLD
        return self.apply(decision, lrs)

    def reset(self) -> None:
        """Restore the initial learning rates and clear all state (as ``reset_after`` does)."""
        self.apply(RESET)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-serialisable) state; restores the exact trajectory."""
        return {
            "config": asdict(self.config),
            "initial_lrs": list(self.initial_lrs),
            "min_lrs": list(self.min_lrs),
            "max_lrs": list(self.max_lrs),
            "lrs": list(self.lrs),
            "best": self.best,
            "last_value": self.last_value,
            "num_good": self.num_good,
            "num_bad": self.num_bad,
            "decreases_left": self.decreases_left,
            "increases_left": self.increases_left,
            "increase_votes": self.increase_votes,
            "min_attempts": self.min_attempts,
            "descent_streak": self.descent_streak,
            "descent_power": self.descent_power,
            "last_better": self.last_better,
            # Strict JSON: an infinite gain (values spanning the float range) as "inf".
            "last_gain": (self.last_gain if self.last_gain is None or math.isfinite(self.last_gain)
                          else repr(self.last_gain)),
            "ceiling_lrs": None if self.ceiling_lrs is None else list(self.ceiling_lrs),
            "num_calls": self.num_calls,
            "num_resets": self.num_resets,
            "window": None if self._window is None else self._window.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a refused state (ValueError) changes nothing."""
        try:
            state = upgrade_state(state)
            config = GreedyConfig(**state["config"])
            n = len(self.initial_lrs)
            ceiling = state.get("ceiling_lrs")  # (states written before spike_ceiling: none)
            lengths = [(k, state[k]) for k in ("initial_lrs", "min_lrs", "max_lrs", "lrs")]
            for key, values in lengths + [("ceiling_lrs", [0] * n if ceiling is None else ceiling)]:
                if len(values) != n:
                    raise ValueError(f"state {key} has {len(values)} entries but this scheduler "
                                     f"has {n} groups")
            missing = [k for k in _STATE_KEYS if k not in state]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a GreedyController state: {exc!r}") from None
        if missing:
            raise ValueError(f"not a GreedyController state: missing {missing}")
        self._configure(config)
        if self._window is not None and state["window"] is not None:
            self._window.load_state_dict(state["window"])
        self.initial_lrs = [float(v) for v in state["initial_lrs"]]
        self.min_lrs = [float(v) for v in state["min_lrs"]]
        self.max_lrs = [float(v) for v in state["max_lrs"]]
        self.lrs = [float(v) for v in state["lrs"]]
        best = None if state["best"] is None else float(state["best"])
        self._set_best(None if best is None else self._sign * best)
        self.last_value = None if state["last_value"] is None else float(state["last_value"])
        for key in ("num_good", "num_bad", "decreases_left", "increases_left", "min_attempts",
                    "num_calls", "num_resets"):
            setattr(self, key, int(state[key]))
        self.increase_votes = int(state.get("increase_votes", 0))  # states written before it
        self.descent_streak = int(state.get("descent_streak", 0))  # (before accelerate)
        self.descent_power = int(state.get("descent_power", 1))
        self.last_better = bool(state.get("last_better", False))  # (before climb_on_speedup)
        gain = state.get("last_gain")
        self.last_gain = None if gain is None else float(gain)  # float("inf") reads "inf"
        self.ceiling_lrs = None if ceiling is None else [float(v) for v in ceiling]
