"""GreedyLR as an optax transformation (extra ``learnlr[jax]``).

``greedy_lr(...)`` is a ``GradientTransformationExtraArgs`` that takes the loss as ``value=`` (like
``optax.contrib.reduce_on_plateau``) and multiplies the updates by GreedyLR's current LR factor::

    tx = optax.chain(optax.adamw(1e-3), greedy_lr(patience=10, window=50))
    state = tx.init(params)
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = tx.update(grads, state, params, value=loss)   # jit-compatible
    params = optax.apply_updates(params, updates)

It is the same state machine as :class:`learnlr.control.greedy.GreedyController` (which the torch
``GreedyLR`` wraps), rewritten with ``jnp.where`` so it traces: the state is a NamedTuple of
arrays, there is no Python branching on traced values, and the same metric sequence gives the same
decisions and the same LR factor (tests/integrations/test_optax.py checks this against the torch
class, windowed smoothing and NaN/Inf included). ``scale`` plays the role of ``lr / initial_lr``:
``min_scale`` / ``max_scale`` (default 0.1 / 1, or 0.1 / 10 with ``total_steps``) are the torch
defaults ``min_lr`` / ``max_lr``.

Why two implementations of the transition rules rather than one: the Python controller runs once
per optimizer step on Python floats, and its early-return branches are what keep the torch
scheduler's per-step cost at a few hundred nanoseconds; a traced version must evaluate every
branch with ``jnp.where`` and may not branch on values at all. One function written for both
(an ``xp`` namespace, as :func:`learnlr.control.budget.envelope` does) would make the torch path
pay for every branch or the jnp path untraceable. What can be shared is shared: the defaults and
the budget (:func:`learnlr.control.schedule.resolve`), the phase rules' thresholds (the
:class:`~learnlr.control.budget.Budget`) and the envelope itself (``envelope(..., xp=jnp)``).
The rules are kept equal by the differential tests in tests/integrations/test_optax.py, which
run both on the same metric sequences (with and without a budget, under ``jax.jit``).

Timing: as in ``reduce_on_plateau``, the decision triggered by ``value`` already scales the
update passed with it (``value`` is the loss at the current parameters); torch's ``GreedyLR``,
stepped after ``optimizer.step()``, applies it from the next step. The sequence of factors is the
same; it is shifted by one update.

Precision: the smoothing window and the best value are kept in JAX's default float dtype (float32
unless ``jax_enable_x64``), the torch class in float64; decisions agree except for metrics that
differ by less than float32 resolution.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from learnlr.control.budget import DEFAULT_ANNEAL_FRACTION
from learnlr.control.greedy import DECREASE, HOLD, INCREASE, RESET
from learnlr.control.schedule import resolve


class GreedyLRState(NamedTuple):
    """GreedyLR's state as arrays (metric values stored with the mode's sign: lower is better)."""

    scale: jax.Array
    """Current LR factor (1.0 = the optimizer's own learning rate)."""
    best: jax.Array
    """Best (smoothed) value so far, internal sign; +inf before the first finite metric."""
    last_value: jax.Array
    """Last (smoothed) finite metric in its own sign; NaN before any."""
    num_good: jax.Array
    num_bad: jax.Array
    decreases_left: jax.Array
    increases_left: jax.Array
    increase_votes: jax.Array
    min_attempts: jax.Array
    num_calls: jax.Array
    """Calls of ``update`` so far (= the index of the next update; warmup calls included)."""
    num_resets: jax.Array
    decision: jax.Array
    """Decision of the last call: HOLD 0, INCREASE 1, DECREASE -1, RESET 2."""
    window: jax.Array
    """Ring buffer of the last ``window`` finite metrics (internal sign)."""
    window_pos: jax.Array
    window_count: jax.Array


def _check_scale(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def greedy_lr(
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    anneal_fraction: float = DEFAULT_ANNEAL_FRACTION,
    adaptation: float | None = None,
    mode: str = "min",
    factor: float | None = None,
    patience: int | None = None,
    increase_every: int | None = None,
    threshold: float = 0.0,
    threshold_mode: str = "rel",
    keep_decreasing: int = 0,
    keep_increasing: int = 0,
    window: int | None = None,
    reset_after: int | None = None,
    min_scale: float | None = None,
    max_scale: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """GreedyLR as an optax transformation; see the module docstring and :class:`learnlr.GreedyLR`.

    Arguments are those of :class:`learnlr.GreedyLR` it lists (not ``accelerate``,
    ``climb_on_speedup``, ``spike_ceiling``, ``reduce``, ``sync_every``, ``process_group``, and
    ``min_lr`` / ``max_lr`` become scales), with ``min_scale`` / ``max_scale`` bounding
    the LR factor (``0 <= min_scale <= 1 <= max_scale``; default 0.1 / 1, or 0.1 / 10 with a
    budget). ``update`` needs ``value=`` (the loss). Unset ``factor`` / ``patience`` / ``window``
    take the torch class's defaults (:func:`learnlr.control.schedule.resolve`).

    With ``total_steps`` (the number of ``update`` calls in the run) the updates are scaled by
    ``scale * envelope(t)`` (:func:`learnlr.control.budget.envelope` with ``xp=jax.numpy``; ``t``
    is the update's 0-based index): a linear LR warmup over ``warmup_steps`` and a final 1-sqrt
    anneal over ``anneal_fraction`` of the run. The phase rules are the torch class's: the values
    of the warmup updates are not observed, and no increase is taken for an update inside the
    anneal. ``state.scale`` stays GreedyLR's own factor (the torch class's ``stable_lrs``).

    >>> import jax.numpy as jnp
    >>> tx = greedy_lr(patience=0, window=1, max_scale=10.0)
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> updates, state = tx.update({"w": jnp.ones(2)}, state, value=1.0)
    >>> float(state.scale) > 1.0   # first finite value beats "no best yet": increase
    True
    """
    resolved = resolve(
        total_steps=total_steps, warmup_steps=warmup_steps, anneal_fraction=anneal_fraction,
        factor=factor, patience=patience, increase_every=increase_every, window=window,
        adaptation=adaptation, mode=mode,
        threshold=threshold, threshold_mode=threshold_mode, keep_decreasing=keep_decreasing,
        keep_increasing=keep_increasing, reset_after=reset_after,
    )
    config, budget = resolved.config, resolved.budget
    lo = _check_scale("min_scale", resolved.min_lr_ratio if min_scale is None else min_scale)
    hi = _check_scale("max_scale", resolved.max_lr_ratio if max_scale is None else max_scale)
    if not lo <= 1.0 <= hi:
        raise ValueError(
            f"min_scale <= 1 <= max_scale is required (the optimizer's own LR is scale 1), "
            f"got min_scale={lo!r}, max_scale={hi!r}"
        )
    sign = 1.0 if config.mode == "min" else -1.0
    rel = config.threshold_mode == "rel"
    size = config.window

    def init_fn(params: Any) -> GreedyLRState:
        del params
        ftype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
        zero = jnp.zeros((), jnp.int32)
        return GreedyLRState(
            scale=jnp.ones((), ftype), best=jnp.full((), jnp.inf, ftype),
            last_value=jnp.full((), jnp.nan, ftype), num_good=zero, num_bad=zero,
            decreases_left=zero, increases_left=zero, increase_votes=zero, min_attempts=zero,
            num_calls=zero,
            num_resets=zero, decision=zero, window=jnp.zeros((size,), ftype),
            window_pos=zero, window_count=zero,
        )

    def step(state: GreedyLRState, value: jax.Array) -> GreedyLRState:
        ftype = state.best.dtype
        raw = jnp.asarray(value, ftype).reshape(())
        finite = jnp.isfinite(raw)
        v = sign * raw
        # Smoothing: non-finite values never enter the window.
        if size > 1:
            buf = jnp.where(finite, state.window.at[state.window_pos].set(v), state.window)
            count = jnp.where(finite, jnp.minimum(state.window_count + 1, size), state.window_count)
            pos = jnp.where(finite, (state.window_pos + 1) % size, state.window_pos)
            smoothed = jnp.sum(buf) / jnp.maximum(count, 1).astype(ftype)
        else:
            buf, count, pos, smoothed = state.window, state.window_count, state.window_pos, v
        has_best = jnp.isfinite(state.best)
        margin = config.threshold * (jnp.abs(state.best) if rel else 1.0)
        bar = jnp.where(has_best, state.best - jnp.where(has_best, margin, 0.0), jnp.inf)
        better = finite & (smoothed < bar)
        best = jnp.where(better, smoothed, state.best)
        last_value = jnp.where(finite, sign * smoothed, state.last_value)
        num_good = jnp.where(better, state.num_good + 1, 0)
        num_bad = jnp.where(better, 0, state.num_bad + 1)
        increases_left = jnp.where(finite, state.increases_left, 0)  # never keep raising into a divergence

        in_decreasing = state.decreases_left > 0
        in_increasing = ~in_decreasing & (increases_left > 0)
        free = ~in_decreasing & ~in_increasing
        # increase_every: a patience-triggered increase is a vote; every n-th vote is taken.
        voted = free & (num_good > config.patience)
        votes = jnp.where(voted, state.increase_votes + 1, state.increase_votes)
        voted_in = voted & (votes >= config.increase_every)
        votes = jnp.where(voted_in, 0, votes)
        inc = voted_in | in_increasing
        dec = (free & ~voted & (num_bad > config.patience)) | in_decreasing
        decreases_left = jnp.where(in_decreasing, state.decreases_left - 1,
                                  jnp.where(dec, config.keep_decreasing, state.decreases_left))
        increases_left = jnp.where(in_increasing, increases_left - 1, jnp.where(inc, config.keep_increasing, increases_left))
        num_good = jnp.where(inc | voted | dec, 0, num_good)
        num_bad = jnp.where(inc | voted | dec, 0, num_bad)

        if budget is not None and budget.anneal_steps > 0:
            # The torch class's gate: no increase for the update after this one if it anneals.
            inc_taken = inc & (state.num_calls + 1 < budget.anneal_start)
        else:
            inc_taken = inc
        scale = state.scale
        at_min = scale <= lo
        min_attempts = state.min_attempts
        reset = jnp.zeros((), bool)
        if config.reset_after is not None:
            min_attempts = jnp.where(dec & at_min, min_attempts + 1, min_attempts)
            reset = dec & at_min & (min_attempts >= config.reset_after)
        min_attempts = jnp.where(inc_taken, 0, min_attempts)
        f = jnp.asarray(config.factor, scale.dtype)
        scale = jnp.where(dec, jnp.maximum(scale * f, lo),
                          jnp.where(inc_taken, jnp.minimum(scale / f, hi), scale))
        decision = jnp.where(dec, DECREASE, jnp.where(inc_taken, INCREASE, HOLD)).astype(jnp.int32)

        stepped = GreedyLRState(
            scale=scale, best=best, last_value=last_value, num_good=num_good, num_bad=num_bad,
            decreases_left=decreases_left, increases_left=increases_left,
            increase_votes=votes, min_attempts=min_attempts,
            num_calls=state.num_calls + 1, num_resets=state.num_resets, decision=decision,
            window=buf, window_pos=pos, window_count=count,
        )
        cleared = init_fn(None)._replace(
            num_calls=stepped.num_calls, num_resets=state.num_resets + 1,
            decision=jnp.asarray(RESET, jnp.int32),
        )
        cleared = cleared._replace(scale=cleared.scale.astype(scale.dtype),
                                   best=cleared.best.astype(ftype),
                                   last_value=cleared.last_value.astype(ftype),
                                   window=cleared.window.astype(ftype))
        new = jax.tree.map(lambda a, b: jnp.where(reset, a, b), cleared, stepped)
        if budget is None:
            return new
        # control.schedule.observes: not in the warmup (the loss falls because the LR ramps up)
        # and not past the budget (the final LR holds).
        skipped = state._replace(num_calls=state.num_calls + 1,
                                 decision=jnp.asarray(HOLD, jnp.int32))
        observed = ((state.num_calls >= budget.warmup_steps)
                    & (state.num_calls < budget.total_steps))
        return jax.tree.map(lambda a, b: jnp.where(observed, a, b), new, skipped)

    def update_fn(
        updates: optax.Updates,
        state: GreedyLRState,
        params: optax.Params | None = None,
        *,
        value: jax.typing.ArrayLike,
        **extra_args: Any,
    ) -> tuple[optax.Updates, GreedyLRState]:
        del params, extra_args
        new_state = step(state, value)
        factor = new_state.scale
        if budget is not None:
            factor = factor * jnp.asarray(budget.multiplier(state.num_calls, xp=jnp), factor.dtype)
        updates = jax.tree.map(lambda g: g * factor.astype(g.dtype), updates)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
