"""learnlr.integrations.optax.greedy_lr: jit-compatible, and the same decisions as the torch class."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from learnlr import GreedyLR
from learnlr.control.greedy import DECREASE, HOLD, INCREASE
from learnlr.integrations.optax import GreedyLRState, greedy_lr

PARAMS = {"w": jnp.zeros(3), "b": jnp.zeros(())}


def metric_sequence(seed: int, n: int = 300) -> list[float]:
    """A float32 random walk that falls, plateaus and rises, with NaN/+-Inf spikes."""
    rng = np.random.default_rng(seed)
    drift = np.where((np.arange(n) // 40) % 3 == 0, -0.05, np.where((np.arange(n) // 40) % 3 == 1, 0.0, 0.03))
    values = (5.0 + np.cumsum(drift + 0.05 * rng.standard_normal(n))).astype(np.float32)
    out = [float(v) for v in values]
    for i in rng.choice(n, size=15, replace=False):
        out[i] = [math.nan, math.inf, -math.inf][int(i) % 3]
    return out


CONFIGS = [
    {"window": 1, "patience": 0, "factor": 0.9},
    {"window": 3, "patience": 2, "factor": 0.8, "keep_decreasing": 2, "keep_increasing": 1},
    {"window": 8, "patience": 1, "factor": 0.7, "reset_after": 2, "threshold": 1e-3},
    {"window": 5, "patience": 3, "factor": 0.5, "threshold": 0.01, "threshold_mode": "abs",
     "reset_after": 3, "keep_decreasing": 1},
    {"window": 4, "patience": 1, "factor": 0.6, "mode": "max", "keep_increasing": 2},
    {"window": 2, "patience": 0, "factor": 0.9, "keep_increasing": 4},  # long warmups hit by NaN spikes
    {"window": 2, "patience": 1, "factor": 0.8, "increase_every": 3, "keep_increasing": 1,
     "reset_after": 2},
]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_same_decisions_as_the_torch_class_on_the_same_metrics(kwargs, seed):
    metrics = metric_sequence(seed)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = GreedyLR(opt, **kwargs)  # initial LR 1.0: LR == scale; bounds 0.1 / 10 on both sides
    tx = greedy_lr(**kwargs)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    moves = 0
    for m in metrics:
        sched.step(m)
        _, state = update(PARAMS, state, value=jnp.float32(m))
        c = sched.controller
        assert (int(state.num_good), int(state.num_bad), int(state.decreases_left),
                int(state.increases_left), int(state.min_attempts), int(state.num_resets)) == (
            c.num_good, c.num_bad, c.decreases_left, c.increases_left, c.min_attempts, c.num_resets)
        assert float(state.scale) == pytest.approx(sched.get_last_lr()[0], rel=1e-4)
        moves += int(state.decision) != HOLD
    assert moves > 20  # the sequence exercised increases and decreases
    assert int(state.num_calls) == len(metrics)
    assert float(state.best) * (1 if kwargs.get("mode", "min") == "min" else -1) == pytest.approx(
        sched.best, rel=1e-5)


def hand_state(**fields) -> GreedyLRState:
    return greedy_lr(patience=2, window=1).init(PARAMS)._replace(**fields)


def test_patience_plus_one_bad_calls_decrease_once_built_by_hand():
    tx = greedy_lr(patience=2, window=1, factor=0.5)
    state = hand_state(best=jnp.float32(1.0))
    decisions = []
    for _ in range(3):
        _, state = tx.update(PARAMS, state, value=2.0)
        decisions.append(int(state.decision))
    assert decisions == [HOLD, HOLD, DECREASE]
    assert float(state.scale) == 0.5
    assert int(state.num_bad) == 0


def test_nan_counts_as_bad_and_never_enters_the_window():
    tx = greedy_lr(patience=0, window=3)
    state = tx.init(PARAMS)
    _, state = tx.update(PARAMS, state, value=1.0)
    assert int(state.decision) == INCREASE
    _, state = tx.update(PARAMS, state, value=jnp.nan)
    assert int(state.decision) == DECREASE
    assert int(state.window_count) == 1 and float(state.best) == 1.0


def test_updates_are_scaled_by_the_new_factor_and_keep_their_dtype():
    tx = greedy_lr(patience=0, window=1, factor=0.5, max_scale=10.0)
    grads = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((), jnp.float32)}
    state = tx.init(grads)
    updates, state = tx.update(grads, state, value=1.0)
    assert float(state.scale) == 2.0
    assert updates["w"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(updates["w"], np.float32), 2.0)


def test_jit_scan_in_a_chain_matches_eager_and_trains():
    """A whole training run traced with lax.scan, inside optax.chain, value=loss."""
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss_fn(w):
        return jnp.mean((x @ w - y) ** 2)

    tx = optax.chain(optax.sgd(0.02), greedy_lr(patience=1, window=4, factor=0.8, max_scale=10.0))

    def train_step(carry, _):
        w, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = tx.update(grads, state, w, value=loss)
        return (optax.apply_updates(w, updates), state), (loss, state[1].scale)

    w0 = jnp.zeros(3)
    (w_jit, state_jit), (losses, scales) = jax.jit(
        lambda c: jax.lax.scan(train_step, c, None, length=60))((w0, tx.init(w0)))
    carry = (w0, tx.init(w0))
    for _ in range(60):
        carry, _ = train_step(carry, None)
    np.testing.assert_allclose(np.asarray(carry[0]), np.asarray(w_jit), rtol=1e-5)
    assert float(losses[-1]) < 0.01 * float(losses[0])
    assert float(scales.max()) > 1.0  # steady progress raised the LR


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"factor": 1.0}, "factor"), ({"patience": -1}, "patience"), ({"window": 0}, "window"),
     ({"mode": "up"}, "mode"), ({"min_scale": 2.0}, "min_scale"), ({"max_scale": -1.0}, "max_scale"),
     ({"max_scale": 0.5}, "max_scale")],
)
def test_invalid_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        greedy_lr(**kwargs)


def test_update_requires_the_value():
    tx = greedy_lr()
    with pytest.raises(TypeError, match="value"):
        tx.update(PARAMS, tx.init(PARAMS))


BUDGET_CONFIGS = [
    {"total_steps": 300, "warmup_steps": 20, "window": 3, "patience": 2, "factor": 0.8},
    {"total_steps": 300, "anneal_fraction": 0.3, "window": 1, "patience": 0, "factor": 0.9,
     "keep_increasing": 2},
    {"total_steps": 300, "warmup_steps": 50, "reset_after": 2, "keep_decreasing": 1},  # derived
    {"total_steps": 250, "warmup_steps": 10, "mode": "max", "window": 4, "patience": 1},  # past it
]


@pytest.mark.parametrize("kwargs", BUDGET_CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_budget_mode_matches_the_torch_class_under_jit(kwargs, seed):
    """Same decisions and stable LR as torch GreedyLR(total_steps=...), and updates scaled by
    scale x envelope(update index) (torch applies the same stable LR one update later)."""
    metrics = metric_sequence(seed)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = GreedyLR(opt, **kwargs)
    budget = sched.budget
    tx = greedy_lr(**kwargs)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    moves = 0
    for t, m in enumerate(metrics):
        sched.step(m)
        updates, state = update(PARAMS | {"w": jnp.ones(3)}, state, value=jnp.float32(m))
        c = sched.controller
        assert (int(state.num_good), int(state.num_bad), int(state.decreases_left),
                int(state.increases_left), int(state.min_attempts), int(state.num_resets)) == (
            c.num_good, c.num_bad, c.decreases_left, c.increases_left, c.min_attempts, c.num_resets)
        stable = sched.stable_lrs[0]
        assert float(state.scale) == pytest.approx(stable, rel=1e-4)
        assert float(updates["w"][0]) == pytest.approx(stable * budget.multiplier(t), rel=1e-4,
                                                       abs=1e-7)
        moves += int(state.decision) != HOLD
        if t < budget.warmup_steps:
            assert int(state.decision) == HOLD  # warmup values are not observed
    assert moves > 10
    assert int(state.num_calls) == len(metrics)


def test_budget_mode_takes_no_increase_inside_the_anneal():
    total = 40
    tx = greedy_lr(total_steps=total, window=1, patience=0, factor=0.9, anneal_fraction=0.25)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = GreedyLR(opt, total_steps=total, window=1, patience=0, factor=0.9,
                     anneal_fraction=0.25)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    decisions = []
    for t in range(total):  # a loss that always improves: every call wants an increase
        sched.step(10.0 - 0.1 * t)
        _, state = update(PARAMS, state, value=jnp.float32(10.0 - 0.1 * t))
        decisions.append(int(state.decision))
        assert float(state.scale) == pytest.approx(sched.stable_lrs[0], rel=1e-5)
    start = sched.budget.anneal_start
    assert set(decisions[start - 1:]) == {HOLD} and INCREASE in decisions[:start - 1]


def test_budget_arguments_are_validated_like_the_torch_class():
    for kwargs, name in (({"total_steps": 0}, "total_steps"),
                         ({"total_steps": 10, "warmup_steps": -1}, "warmup_steps"),
                         ({"warmup_steps": 5}, "warmup_steps"),
                         ({"total_steps": 10, "anneal_fraction": 2.0}, "anneal_fraction")):
        with pytest.raises(ValueError, match=name):
            greedy_lr(**kwargs)
        with pytest.raises(ValueError, match=name):
            GreedyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), **kwargs)
