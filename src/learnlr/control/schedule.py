"""GreedyLR that knows its budget: the defaults, the phase rules, and the combined LR.

Every adapter (torch ``GreedyLR``, the optax transformation, the HF and Lightning integrations,
the RL scheduler) builds its controller through :func:`resolve` and applies :func:`gate`, so
they all make the same decisions.

With a budget (``total_steps``) the learning rate is::

    lr(t) = stable_lr(t) * envelope(t)        # envelope: learnlr.control.budget

where ``stable_lr`` is GreedyLR's own state, moved by the loss feedback, and the envelope adds an
LR warmup and the final anneal to ~0 that every strong fixed schedule ends with (WSD, cosine).
The phase rules:

* **warmup** (``t < warmup_steps``): metrics are not observed. The loss falls because the LR is
  ramping, which says nothing about whether the target LR is right.
* **stable**: GreedyLR as without a budget, except that only every second increase decision is
  taken (``increase_every=2``): the LR can fall 10x within ``adaptation`` (half) of the stable
  phase and climb 10x within the whole of it, so both bounds stay reachable. A climb is a bet on
  the training loss alone; measured on the dev benchmark, slower climbs help at the tuned LR and
  at 10x it, where a climb pushes into the region that stalls or diverges, and cost some of the
  rescue of a 10x too small LR.
* **anneal** (the last ``anneal_fraction`` of the steps): decreases still apply (a safety valve),
  increases are dropped: the loss falls because the envelope is annealing, and raising the LR
  then would fight the decay. (With ``reset_after`` set, a reset can still restore the initial
  LR there; it is off by default.)

Budget-aware defaults are rules, not constants tuned to one budget: bounds of 10x either way
around the initial LR (so a base LR 10x off can be rescued), and a patience derived from the
budget so that a 10x descent takes ``adaptation`` (default half) of the stable phase, whatever
the budget (a 10x climb twice as long). docs/greedylr.md has the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from learnlr.control.budget import DEFAULT_ANNEAL_FRACTION, Budget, anneal_steps_for
from learnlr.control.greedy import HOLD, INCREASE, PER_EVAL, GreedyConfig

# Without a budget: the paper's per-step settings (see docs/greedylr.md).
REACTIVE_DEFAULTS: dict[str, Any] = {
    "factor": 0.95, "patience": 10, "window": 50, "min_lr_ratio": 0.1, "max_lr_ratio": 1.0,
}
# With a budget (chosen on the dev benchmark; docs/greedylr.md, "Budget-aware defaults").
BUDGET_DEFAULTS: dict[str, Any] = {
    "factor": 0.9, "adaptation": 0.5, "max_window": 50, "min_lr_ratio": 0.1,
    "max_lr_ratio": 10.0, "increase_every": 2,
}

# With a budget and one decision per *evaluation* on the validation loss (HF / Lightning eval
# modes, bench greedy_eval_budget): descend on every evaluation that sets no new best, climb on
# every 6th that does (the same evidence per climb as the reactive PER_EVAL's three in a row,
# twice). A run has ~10-30 evaluations: PER_EVAL's patience 2 needs 30 of them for a 10x descent.
# Chosen on the full benchmark's dev half (docs/greedylr.md, "Two signals").
# accelerate: the k-th evaluation in a row without a new best descends by factor**k. A validation
# loss that rises at every evaluation (an overfitting run, a 10x too large LR) then falls 10x in
# 4 evaluations instead of 10, while an isolated miss still costs one factor (docs/greedylr.md,
# "Compounding descents").
# climb_on_speedup: a new best whose gain is at least the previous new best's (the curve is not
# slowing down) climbs at once. A too-small LR keeps answering each climb with a larger gain and
# climbs on; a right one slows down and stops (docs/greedylr.md, "Climbs while the curve does not
# slow down").
# spike_ceiling: an evaluation at twice the best validation loss marks its LR as too large and no
# later climb reaches it; a speed-up is no evidence against an LR that has blown the loss up once
# (docs/greedylr.md, "No climb back to an LR that spiked").
BUDGET_PER_EVAL: dict[str, Any] = {"window": 1, "patience": 0, "factor": 0.8, "increase_every": 6,
                                   "accelerate": True, "climb_on_speedup": True,
                                   "spike_ceiling": True}

# With a budget, the per-evaluation mode's LR floor (``min_lr=None``) is this fraction of the
# initial LR, not the per-step mode's 0.1: with compounding descents a run that overfits reaches
# 0.1x in 4 evaluations and would then sit there, still overfitting, for most of the stable
# phase. The anneal ends at ~0 anyway.
EVAL_MIN_LR_RATIO = 0.01


# With a budget, the per-evaluation mode also warms the LR up linearly over this fraction of the
# steps (WSD's 5 %, the bench's wsd baseline): at a 10x too large LR the first updates are the
# ones that break a network, before the first evaluation or the brake's window can see it. The
# first evaluation comes after ~5 % of a 20-evaluation run, so at most one decision is lost.
# Chosen on the dev benchmark (docs/greedylr.md, "An LR warmup for the per-evaluation mode").
EVAL_WARMUP_FRACTION = 0.05


def eval_warmup_steps(total_steps: int) -> int:
    """The per-evaluation mode's default LR warmup: :data:`EVAL_WARMUP_FRACTION` of the budget,
    or none where that is under 2 steps (a 1-step warmup leaves the LR as it is and would only
    hide the first update from the decisions and the brake)."""
    steps = round(EVAL_WARMUP_FRACTION * total_steps)
    return steps if steps >= 2 else 0


def per_eval_defaults(budget_aware: bool) -> dict[str, Any]:
    """The defaults for one decision per evaluation: :data:`BUDGET_PER_EVAL` with a budget,
    :data:`learnlr.control.greedy.PER_EVAL` (the reactive rule's) without."""
    return dict(BUDGET_PER_EVAL if budget_aware else PER_EVAL)


def patience_for(stable_steps: int, factor: float, adaptation: float) -> int:
    """Patience such that a 10x LR move (``log 10 / log(1/factor)`` decisions, each after
    ``patience + 1`` calls) takes ``adaptation`` of the ``stable_steps``."""
    decisions_per_10x = math.log(10.0) / math.log(1.0 / factor)
    return max(0, round(adaptation * stable_steps / decisions_per_10x) - 1)


def window_for(stable_steps: int, max_window: int) -> int:
    """Smoothing window: the paper's 50, but at most a tenth of the stable phase (a 50-step
    mean lags 25 steps, too long for a 300-step run)."""
    return max(1, min(max_window, stable_steps // 10))


@dataclass(frozen=True)
class Resolved:
    """What an adapter needs: the controller config, the budget (None: reactive), the bounds."""

    config: GreedyConfig
    budget: Budget | None
    min_lr_ratio: float
    max_lr_ratio: float


def resolve(
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    anneal_fraction: float = DEFAULT_ANNEAL_FRACTION,
    factor: float | None = None,
    patience: int | None = None,
    window: int | None = None,
    adaptation: float | None = None,
    increase_every: int | None = None,
    **config: Any,
) -> Resolved:
    """Fill the unset hyperparameters from the reactive or the budget-aware defaults.

    ``config`` holds the other :class:`GreedyConfig` fields (mode, threshold, ...).
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    anneal_steps_for(1, anneal_fraction)  # validates it (a ValueError naming it) in either mode
    if total_steps is None:
        if adaptation is not None:
            raise ValueError(
                f"adaptation={adaptation!r} needs total_steps (it sets the patience from the "
                "budget); pass total_steps=<optimizer steps in the run> or patience=")
        if warmup_steps:
            raise ValueError(
                f"warmup_steps={warmup_steps} needs total_steps (the LR warmup is part of the "
                "budget-aware schedule); pass total_steps=<optimizer steps in the run>"
            )
        d = REACTIVE_DEFAULTS
        cfg = GreedyConfig(
            factor=d["factor"] if factor is None else factor,
            patience=d["patience"] if patience is None else patience,
            window=d["window"] if window is None else window,
            increase_every=1 if increase_every is None else increase_every,
            **config,
        )
        return Resolved(cfg, None, d["min_lr_ratio"], d["max_lr_ratio"])
    budget = Budget.from_fraction(total_steps, warmup_steps, anneal_fraction)
    d = BUDGET_DEFAULTS
    factor = d["factor"] if factor is None else factor
    adaptation = d["adaptation"] if adaptation is None else adaptation
    if isinstance(adaptation, bool) or not isinstance(adaptation, (int, float)) or not (
        0.0 < adaptation <= 1.0
    ):
        raise ValueError(f"adaptation must be a number in (0, 1], got {adaptation!r}")
    stable = max(1, budget.anneal_start - budget.warmup_steps)
    # GreedyConfig validates factor; patience_for needs a valid one first.
    GreedyConfig(factor=factor)
    cfg = GreedyConfig(
        factor=factor,
        patience=patience_for(stable, factor, adaptation) if patience is None else patience,
        window=window_for(stable, d["max_window"]) if window is None else window,
        increase_every=d["increase_every"] if increase_every is None else increase_every,
        **config,
    )
    return Resolved(cfg, budget, d["min_lr_ratio"], d["max_lr_ratio"])


def observes(budget: Budget | None, step: int) -> bool:
    """Whether the metric of the update made at ``step`` is shown to the controller: not in the
    LR warmup (the loss falls because the LR ramps), and not past the budget (the final LR
    holds: a run stepped beyond ``total_steps`` keeps the LR it ended with)."""
    return budget is None or budget.warmup_steps <= step < budget.total_steps


def gate(decision: int, budget: Budget | None, next_step: int) -> int:
    """The decision as the phase allows it: no increase for an update inside the anneal."""
    if decision == INCREASE and budget is not None and budget.phase(next_step) == "anneal":
        return HOLD
    return decision
