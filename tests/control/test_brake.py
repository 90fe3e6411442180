"""The training-loss brake (learnlr.control.brake.LossBrake) against a slow reference."""

import json
import math
import random

import pytest

from learnlr.control.brake import LossBrake, WarmupGuard


def reference_fires(values: list[float], window: int, margin: float,
                    lost: float) -> list[bool]:
    """Straight from the definition: after the window has filled, fire when the mean of the last
    ``window`` finite values is above (1 + margin) x the lowest such mean before it (a positive
    one) and above that lowest mean by at least ``lost`` x (first such mean - lowest), at most
    once per ``window`` calls (a call counts only for a finite value)."""
    finite: list[float] = []
    means: list[float] = []
    last_fire: int | None = None
    fires = []
    for v in values:
        if not math.isfinite(v):
            fires.append(False)
            continue
        finite.append(v)
        if len(finite) < window:
            fires.append(False)
            continue
        mean = sum(finite[-window:]) / window
        calls = len(means)  # full-window calls before this one
        best = min(means) if means else None
        means.append(mean)
        fire = (best is not None and best > 0 and mean > (1 + margin) * best
                and mean - best > lost * (means[0] - best)
                and (last_fire is None or calls - last_fire >= window))
        if fire:
            last_fire = calls
        fires.append(fire)
    return fires


@pytest.mark.parametrize("seed", range(20))
def test_brake_matches_the_reference(seed):
    rng = random.Random(seed)
    window, margin = rng.randint(1, 6), rng.choice([0.5, 1.0, 2.0])
    lost = rng.choice([0.0, 0.25, 0.6])
    values = []
    level = 1.0
    for _ in range(300):
        level *= rng.choice([0.97, 1.0, 1.0, 1.6])  # falls, holds, and now and then jumps
        values.append(level * (1 + 0.3 * rng.random()) if rng.random() > 0.02 else math.nan)
    brake = LossBrake(window, margin, lost)
    got = [brake.push(v) for v in values]
    want = reference_fires(values, window, margin, lost)
    assert got == want
    assert brake.num_brakes == sum(want) > 0


def test_a_steady_or_falling_loss_never_brakes():
    brake = LossBrake(5)
    assert not any(brake.push(1.0 / (1 + t) + 0.01 * (t % 3)) for t in range(500))
    assert brake.num_brakes == 0


def test_state_round_trip_through_json_continues_bit_for_bit():
    rng = random.Random(3)
    values = [math.exp(rng.gauss(0, 0.8)) for _ in range(400)]
    full = LossBrake(7)
    expected = [full.push(v) for v in values]
    for cut in (0, 3, 7, 50, 211, 399):
        first = LossBrake(7)
        head = [first.push(v) for v in values[:cut]]
        second = LossBrake(7)
        second.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert head + [second.push(v) for v in values[cut:]] == expected


@pytest.mark.parametrize("margin", [0, -1.0, math.inf, math.nan, True, "1"])
def test_bad_margin_is_a_value_error_naming_it(margin):
    with pytest.raises(ValueError, match="brake margin must be a finite number > 0"):
        LossBrake(5, margin)


def test_bad_window_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        LossBrake(0)


def test_a_loss_at_or_below_zero_never_brakes():
    """"Twice the best" has no meaning once the best is <= 0 (a negative log-likelihood)."""
    brake = LossBrake(2)
    values = [-1.0, -1.0, -2.0, -2.0, 5.0, 5.0, 5.0, 0.0, 0.0, 9.0, 9.0]
    assert not any(brake.push(v) for v in values)


def test_lost_progress_spares_a_noisy_loss_near_zero_but_not_a_blow_up():
    near_zero = [1.0] * 5 + [0.01] * 20 + [0.03] * 10  # tripled, but 98 % of the progress kept
    blow_up = [1.0] * 5 + [0.01] * 20 + [0.5] * 10     # half the progress lost
    for values, fires in ((near_zero, False), (blow_up, True)):
        brake = LossBrake(5, lost_progress=0.25)
        assert any(brake.push(v) for v in values) is fires
        plain = LossBrake(5, lost_progress=0.0)
        assert any(plain.push(v) for v in values)  # without it both fire


def test_bad_lost_progress_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="lost_progress must be a number in"):
        LossBrake(5, lost_progress=1.5)


def test_warmup_guard_fires_once_at_a_tenth_of_the_ramp_where_the_mean_was_best():
    g = WarmupGuard(window=3)
    ramps = [(t + 1) / 20 for t in range(20)]
    losses = [3.0, 2.5, 2.0, 1.8, 1.7, 1.9, 2.5, 4.0, 9.0, 20.0, 50.0, 80.0]
    out = [g.push(v, r) for v, r in zip(losses, ramps)]
    # Means of 3: 2.5, 2.1, 1.83, 1.8 (the best, at the 6th loss: ramp 6 / 20), 2.03, 2.8, then
    # 5.17 at the 9th loss, past 2 x 1.8.
    fired = [i for i, o in enumerate(out) if o is not None]
    assert fired == [8]
    assert out[8] == pytest.approx(0.1 * 6 / 20)
    assert g.fired


def test_warmup_guard_treats_a_non_finite_loss_as_a_blowup_once_it_has_a_best():
    g = WarmupGuard(window=2)
    assert g.push(math.nan, 0.1) is None  # nothing to compare with yet
    assert [g.push(v, r) for v, r in ((1.0, 0.2), (1.0, 0.3))] == [None, None]
    assert g.push(math.inf, 0.4) == pytest.approx(0.1 * 0.3)


def test_warmup_guard_fires_when_a_network_dies_back_to_chance():
    # SGD at 10x on a CNN: the loss falls from chance (2.3) to 1.0, then the network dies.
    g = WarmupGuard(window=2)
    out = [g.push(v, (i + 1) / 20) for i, v in enumerate([2.3, 2.3, 1.6, 1.0, 1.0, 1.8, 2.3, 2.3])]
    assert out[:6] == [None] * 6 and out[6] == pytest.approx(0.1 * 5 / 20)


def test_warmup_guard_never_fires_on_a_falling_or_noisy_loss():
    rng = random.Random(0)
    g = WarmupGuard()
    assert all(g.push(1.0 / (1 + 0.01 * t) * rng.uniform(0.7, 1.3), t / 500) is None
               for t in range(500))


def test_warmup_guard_state_round_trips_through_json():
    losses = [2.0, 1.5, 1.2, 1.1, 1.3, 2.0, 3.0, 6.0, 12.0]
    a = WarmupGuard(window=2)
    head = [a.push(v, i / 10) for i, v in enumerate(losses[:4])]
    b = WarmupGuard(window=2)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    tail_a = [a.push(v, (i + 4) / 10) for i, v in enumerate(losses[4:])]
    tail_b = [b.push(v, (i + 4) / 10) for i, v in enumerate(losses[4:])]
    assert head == [None] * 4 and tail_a == tail_b and any(o is not None for o in tail_a)


@pytest.mark.parametrize("kw", [{"backoff": 0.0}, {"backoff": 1.5}, {"backoff": True},
                                {"margin": 0.0}, {"window": 0}, {"lost_progress": 1.5}])
def test_warmup_guard_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        WarmupGuard(**kw)


def test_warmup_guard_lets_a_spike_that_keeps_most_of_the_progress_pass():
    # AdamW at a good LR: the loss falls from 2.3 to 0.2, spikes to 1.0 and 1.2, recovers. The
    # 2-loss mean (best 0.2) reaches 1.1, past twice its best, but keeps over half of the
    # progress from its first mean (2.25).
    g = WarmupGuard(window=2)
    losses = [2.3, 2.2, 1.0, 0.4, 0.2, 0.2, 1.0, 1.2, 0.6, 0.3, 0.2]
    assert all(g.push(v, (i + 1) / 20) is None for i, v in enumerate(losses))
    assert not g.fired
