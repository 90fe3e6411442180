"""The framework-free state machine, driven by hand like optax's reduce_on_plateau tests."""

import json

import pytest

from learnlr.control.greedy import DECREASE, HOLD, INCREASE, RESET, GreedyConfig, GreedyController


def make(initial=(1.0,), min_lr=0.0, max_lr=100.0, **kw):
    kw.setdefault("window", 1)
    kw.setdefault("factor", 0.5)
    return GreedyController(GreedyConfig(**kw), list(initial), min_lr, max_lr)


def test_increase_after_patience_plus_one_improvements():
    c = make(patience=2)
    decisions = [c.update(v) for v in (5.0, 4.0, 3.0, 2.0)]
    assert decisions == [HOLD, HOLD, INCREASE, HOLD]
    assert c.lrs == [2.0]


def test_decrease_after_patience_plus_one_non_improvements():
    c = make(patience=1)
    decisions = [c.update(v) for v in (1.0, 1.0, 1.0, 1.0, 1.0)]
    # call 1 sets the best (good=1); calls 2,3 are bad -> decrease at 3; 4,5 -> decrease at 5
    assert decisions == [HOLD, HOLD, DECREASE, HOLD, DECREASE]
    assert c.lrs == [0.25]


def test_increase_every_takes_every_nth_increase_decision_and_resumes_mid_count():
    c = make(patience=0, increase_every=3)
    assert [c.update(v) for v in (6.0, 5.0, 4.0)] == [HOLD, HOLD, INCREASE]
    assert c.lrs == [2.0]
    assert c.update(3.0) == HOLD
    state = json.loads(json.dumps(c.state_dict()))
    resumed = make(patience=0, increase_every=3)
    resumed.load_state_dict(state)
    for ctrl in (c, resumed):
        assert [ctrl.update(v) for v in (2.0, 1.0)] == [HOLD, INCREASE]
        assert ctrl.lrs == [4.0]
        # A descent does not wait: decreases stay one per patience + 1 bad calls.
        assert ctrl.update(9.0) == DECREASE


def test_accelerate_compounds_descents_until_a_better_call():
    c = make(patience=0, accelerate=True, min_lr=1e-6)
    c.update(5.0)  # the first call sets the best: an increase (patience 0)
    assert c.lrs == [2.0]
    assert [c.update(v) for v in (6.0, 7.0, 6.5)] == [DECREASE] * 3
    # factor 0.5: x0.5, then x0.25, then x0.125 (the 1st, 2nd, 3rd in a row).
    assert c.lrs == [2.0 * 0.5 * 0.25 * 0.125]
    assert c.update(4.0) == INCREASE  # a new best ends the streak
    lr = c.lrs[0]
    assert c.update(4.5) == DECREASE
    assert c.lrs == [lr * 0.5]  # one factor again


def test_accelerate_off_keeps_one_factor_per_descent():
    c = make(patience=0, min_lr=1e-6)
    c.update(5.0)
    for v in (6.0, 7.0, 6.5):
        c.update(v)
    assert c.lrs == [2.0 * 0.5 ** 3]


def test_accelerate_leaves_outside_descents_at_one_factor_and_resumes_mid_streak():
    c = make(patience=0, accelerate=True, min_lr=1e-6)
    for v in (5.0, 6.0, 7.0):
        c.update(v)  # a streak of two
    before = c.lrs[0]
    c.apply(DECREASE)  # e.g. a brake's descent: not part of the streak
    assert c.lrs == [before * 0.5]
    state = json.loads(json.dumps(c.state_dict()))
    resumed = make(patience=0, accelerate=True, min_lr=1e-6)
    resumed.load_state_dict(state)
    for ctrl in (c, resumed):
        lr = ctrl.lrs[0]
        assert ctrl.update(8.0) == DECREASE
        assert ctrl.lrs == [lr * 0.5 ** 3]  # the third in a row


def test_accelerate_stays_within_min_lr():
    c = make(patience=0, accelerate=True, min_lr=0.1)
    for v in (5.0, 6.0, 7.0, 8.0, 9.0):
        c.update(v)
    assert c.lrs == [0.1]


def test_state_written_before_accelerate_loads_with_it_off():
    c = make(patience=0)
    state = c.state_dict()
    del state["descent_streak"], state["descent_power"], state["config"]["accelerate"]
    resumed = make(patience=0)
    resumed.load_state_dict(state)
    assert resumed.config.accelerate is False
    resumed.update(1.0)
    resumed.update(2.0)
    resumed.update(3.0)
    assert resumed.lrs == [2.0 * 0.5 * 0.5]


def test_climb_on_speedup_climbs_when_a_gain_is_at_least_the_one_before():
    c = make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8)
    # Gains 1, 0.5 (slower: hold), 0.5 (as fast: climb), 0.6 (faster: climb), 0.1 (hold).
    assert [c.update(v) for v in (10.0, 9.0, 8.5, 8.0, 7.4, 7.3)] == [
        HOLD, HOLD, HOLD, INCREASE, INCREASE, HOLD]
    assert c.lrs == pytest.approx([1.0 / 0.8 ** 2])
    assert c.increase_votes == 6  # the votes kept counting toward the every-n-th climb


def test_climb_on_speedup_measures_no_gain_across_a_miss():
    c = make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8)
    # 5.0 misses; 4.0 is a new best 0.5 below the old best, but after a miss: no gain yet. 3.9
    # (gain 0.1) has nothing to compare with; 3.8 (0.1 again) climbs.
    decisions = [c.update(v) for v in (6.0, 4.5, 5.0, 4.0, 3.9, 3.8)]
    assert decisions == [HOLD, HOLD, DECREASE, HOLD, HOLD, INCREASE]
    # Measured across the miss, 8.0's gain (9 -> 8) would equal 9.0's and climb.
    c = make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8)
    assert [c.update(v) for v in (10.0, 9.0, 9.5, 8.0, 7.0)] == [
        HOLD, HOLD, DECREASE, HOLD, HOLD]
    # Non-finite calls break a run of better calls too.
    c = make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8)
    assert [c.update(v) for v in (3.0, 2.0, float("nan"), 1.5, 1.0)] == [
        HOLD, HOLD, DECREASE, HOLD, HOLD]


def test_climb_on_speedup_measures_gains_from_the_best_not_the_threshold_bar():
    # rel threshold 0.1: from the best the gains are 2.0 then 1.9 (slower: hold); from the bar
    # they would be 1.0 (9 - 8) then 1.1 (7.2 - 6.1) and climb.
    c = make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8, threshold=0.1)
    assert [c.update(v) for v in (10.0, 8.0, 6.1)] == [HOLD, HOLD, HOLD]
    assert [c.update(v) for v in (4.0,)] == [INCREASE]  # 2.1 after 1.9


def test_climb_on_speedup_waits_for_a_climb_vote_under_patience():
    # patience 1: only a call that completes a vote (more than `patience` better calls in a
    # row) can be the climb; the speed-ups in between hold.
    c = make(patience=1, increase_every=100, climb_on_speedup=True, factor=0.8)
    assert [c.update(v) for v in (10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0)] == [
        HOLD, HOLD, HOLD, INCREASE, HOLD, INCREASE, HOLD]


def test_climb_on_speedup_is_off_by_default_and_sign_agnostic():
    values = (10.0, 9.0, 8.0, 7.0)  # constant gains: a speed-up at the third gain
    assert [make(patience=0, increase_every=100).update(v) for v in values] == [HOLD] * 4
    up = make(patience=0, increase_every=100, climb_on_speedup=True, mode="max")
    assert [up.update(-v) for v in values] == [HOLD, HOLD, INCREASE, INCREASE]
    with pytest.raises(ValueError, match="climb_on_speedup must be True or False"):
        GreedyConfig(climb_on_speedup=1)


def test_climb_on_speedup_resumes_mid_run_and_loads_older_states():
    def fresh():
        return make(patience=0, increase_every=100, climb_on_speedup=True, factor=0.8)

    c = fresh()
    for v in (10.0, 9.0, 8.5):
        c.update(v)
    resumed = fresh()
    resumed.load_state_dict(json.loads(json.dumps(c.state_dict())))
    for ctrl in (c, resumed):
        assert ctrl.update(8.0) == INCREASE  # gain 0.5 after 0.5: the stored gain was used
    # A state written before the option (no gains, no config key) resumes with it off, as
    # checkpoints from before `accelerate` do.
    state = c.state_dict()
    del state["last_better"], state["last_gain"], state["config"]["climb_on_speedup"]
    older = fresh()
    older.load_state_dict(state)
    assert older.config.climb_on_speedup is False
    assert [older.update(v) for v in (7.0, 6.0, 5.0)] == [HOLD] * 3


def test_spike_ceiling_stops_climbs_back_to_an_lr_that_doubled_the_loss():
    c = make(patience=0, spike_ceiling=True, factor=0.5)
    # Two better calls climb 1 -> 2 -> 4; 0.5 at 4 is a miss but not a spike (0.4 x 1.25).
    assert [c.update(v) for v in (1.0, 0.4, 0.5)] == [INCREASE, INCREASE, DECREASE]
    assert c.ceiling_lrs is None
    assert [c.update(v) for v in (0.3, 0.7)] == [INCREASE, DECREASE]  # 0.7 >= 2 x 0.3 at lr 4
    assert c.ceiling_lrs == [4.0] and c.lrs == [2.0]
    # Better calls climb no more: 2 / 0.5 would reach 4 (up to rounding). Votes still count.
    assert [c.update(v) for v in (0.2, 0.1)] == [HOLD, HOLD]
    assert c.lrs == [2.0]
    # Further below, climbs are allowed up to one factor under the ceiling.
    c.lrs = [0.5]
    assert [c.update(v) for v in (0.05, 0.04, 0.03)] == [INCREASE, INCREASE, HOLD]
    assert c.lrs == [2.0]


def test_spike_ceiling_takes_the_lowest_spike_and_non_finite_calls():
    c = make(patience=0, spike_ceiling=True, factor=0.5, increase_every=100)
    c.update(1.0)
    assert c.update(float("inf")) == DECREASE and c.ceiling_lrs == [1.0]
    c.lrs = [8.0]
    c.update(3.0)  # a spike at 8: the ceiling stays at the lower 1
    assert c.ceiling_lrs == [1.0]
    # "max" mode: a positive metric at half its best is the spike.
    up = make(patience=0, spike_ceiling=True, factor=0.5, mode="max", increase_every=100)
    assert [up.update(v) for v in (0.8, 0.41)] == [HOLD, DECREASE] and up.ceiling_lrs is None
    assert up.update(0.4) == DECREASE and up.ceiling_lrs == [0.5]
    # A loss whose best is <= 0 has no "twice as bad": no ceiling.
    neg = make(patience=0, spike_ceiling=True, increase_every=100)
    for v in (-1.0, 5.0):
        neg.update(v)
    assert neg.ceiling_lrs is None


def test_spike_ceiling_ends_a_keep_increasing_run():
    c = make(patience=0, spike_ceiling=True, factor=0.5, keep_increasing=3)
    # The climb at call 1 starts a keep-increasing run; call 2 doubles the loss at lr 2, so the
    # run's next increase (to 4) is held and the run ends.
    assert [c.update(v) for v in (1.0, 2.0)] == [INCREASE, HOLD]
    assert c.ceiling_lrs == [2.0] and c.lrs == [2.0] and c.increases_left == 0
    off = make(patience=0, factor=0.5, keep_increasing=3)
    assert [off.update(v) for v in (1.0, 2.0)] == [INCREASE, INCREASE]


def test_spike_ceiling_is_off_by_default_resumes_and_loads_older_states():
    values = (1.0, 0.5, 2.0, 0.4, 0.3)
    plain = make(patience=0, factor=0.5)
    assert [plain.update(v) for v in values][-2:] == [INCREASE, INCREASE]
    assert plain.ceiling_lrs is None
    with pytest.raises(ValueError, match="spike_ceiling must be True or False"):
        GreedyConfig(spike_ceiling="yes")
    c = make(patience=0, factor=0.5, spike_ceiling=True)
    for v in values[:3]:
        c.update(v)
    resumed = make(patience=0, factor=0.5, spike_ceiling=True)
    resumed.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert resumed.ceiling_lrs == c.ceiling_lrs == [4.0]
    for ctrl in (c, resumed):
        assert [ctrl.update(v) for v in values[3:]] == [HOLD, HOLD]
    # A state written before the option resumes with it off and no ceiling.
    state = c.state_dict()
    del state["ceiling_lrs"], state["config"]["spike_ceiling"]
    older = make(patience=0, factor=0.5, spike_ceiling=True)
    older.load_state_dict(state)
    assert older.config.spike_ceiling is False and older.ceiling_lrs is None
    assert older.update(0.1) == INCREASE
    state = c.state_dict()
    state["ceiling_lrs"] = [4.0, 4.0]
    with pytest.raises(ValueError, match="ceiling_lrs has 2 entries"):
        make(patience=0, factor=0.5, spike_ceiling=True).load_state_dict(state)


def test_compares_with_running_best_not_previous_value():
    c = make(patience=0)
    c.update(1.0)  # best = 1.0 -> increase (patience 0)
    assert c.update(3.0) == DECREASE  # worse than best
    assert c.update(2.0) == DECREASE  # better than previous (3.0) but not than best (1.0)
    assert c.best == 1.0


def test_relative_threshold_uses_abs_best_for_negative_metrics():
    # torch #47513: best * (1 - t) is *larger* than best when best < 0, so tiny changes would
    # count as improvements. With abs(best) the bar is best - t*|best|.
    c = make(patience=0, threshold=0.1, threshold_mode="rel")
    c.update(-10.0)
    assert c.update(-10.5) == DECREASE  # 5 % better: below the 10 % bar
    assert c.update(-11.5) == INCREASE  # 15 % better


def test_absolute_threshold_and_max_mode():
    c = make(patience=0, threshold=0.5, threshold_mode="abs", mode="max")
    c.update(1.0)
    assert c.update(1.4) == DECREASE
    assert c.update(1.6) == INCREASE


def test_cooldown_keeps_decreasing_even_when_the_loss_improves():
    c = make(patience=0, keep_decreasing=2)
    c.update(1.0)  # first value: increase to 2.0
    assert c.lrs == [2.0]
    assert c.update(5.0) == DECREASE  # worse -> decrease, cooldown starts
    assert [c.update(v) for v in (0.5, 0.4)] == [DECREASE, DECREASE]  # improving, still down
    assert c.lrs == [0.25]
    assert c.update(0.3) == INCREASE  # cooldown over: improving again -> up


def test_warmup_keeps_increasing_even_when_the_loss_worsens():
    c = make(patience=0, keep_increasing=2)
    assert c.update(1.0) == INCREASE
    assert [c.update(v) for v in (9.0, 9.0)] == [INCREASE, INCREASE]
    assert c.lrs == [8.0]
    assert c.update(9.0) == DECREASE


def test_non_finite_metric_ends_warmup_and_counts_as_bad():
    c = make(patience=0, keep_increasing=5)
    c.update(1.0)
    assert c.increases_left == 5
    assert c.update(float("nan")) == DECREASE
    assert c.increases_left == 0
    assert c.best == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_never_enters_window_or_best(bad):
    c = make(patience=5, window=3)
    c.update(2.0)
    c.update(bad)
    assert c.best == 2.0
    assert c.num_bad == 1
    assert c._window.values() == [2.0]


def test_window_compares_rolling_mean():
    c = make(patience=0, window=2)
    c.update(4.0)  # mean 4
    # mean of (4, 3) = 3.5 < 4 -> better although the raw value would also be; then (3, 3.8):
    assert c.update(3.0) == INCREASE
    assert c.update(3.8) == INCREASE  # raw 3.8 > best 3.5 but mean 3.4 < 3.5
    assert c.best == pytest.approx(3.4)


def test_bounds_clamp():
    c = make(patience=0, min_lr=0.3, max_lr=1.5)
    c.update(1.0)
    assert c.lrs == [1.5]
    for _ in range(5):
        c.update(2.0)
    assert c.lrs == [0.3]


def test_reset_after_attempts_at_min():
    c = make(patience=0, min_lr=0.5, reset_after=2)
    c.update(1.0)  # increase to 2.0
    decisions = [c.update(9.0) for _ in range(4)]
    # 2.0 -> 1.0 -> 0.5 (reaching min is not an attempt *at* min), then 1st attempt at min,
    # then the 2nd one resets.
    assert decisions == [DECREASE, DECREASE, DECREASE, RESET]
    assert c.lrs == [1.0]
    assert c.best is None and c.num_resets == 1


def test_increase_restarts_the_reset_count():
    c = make(patience=0, min_lr=0.5, reset_after=2, initial=(0.5,))
    c.update(1.0)  # first value: increase to 1.0
    c.update(9.0)  # back to 0.5
    c.update(9.0)  # attempt 1 at min
    c.update(0.1)  # increase -> count restarts
    c.update(9.0)
    assert c.update(9.0) == DECREASE  # attempt 1 again, not a reset
    assert c.num_resets == 0


def test_state_dict_is_json_and_resumes_exactly():
    seq = [3.0, 2.5, float("nan"), 2.7, 2.0, 1.9, 2.2, 2.2, 1.0, 5.0, 0.5, 0.4]
    a = make(patience=1, window=3, keep_decreasing=1, keep_increasing=1)
    for v in seq[:6]:
        a.update(v)
    b = make(patience=1, window=3, keep_decreasing=1, keep_increasing=1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    assert [a.update(v) for v in seq[6:]] == [b.update(v) for v in seq[6:]]
    assert a.lrs == b.lrs and a.best == b.best


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"factor": 1.0}, "factor"),
        ({"factor": 0.0}, "factor"),
        ({"factor": -0.5}, "factor"),
        ({"factor": float("nan")}, "factor"),
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"keep_decreasing": -1}, "keep_decreasing"),
        ({"keep_increasing": -2}, "keep_increasing"),
        ({"threshold": -1e-3}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"window": 0}, "window"),
        ({"increase_every": 0}, "increase_every"),
        ({"increase_every": 1.5}, "increase_every"),
        ({"reset_after": 0}, "reset_after"),
        ({"accelerate": 1}, "accelerate"),
        ({"accelerate": "yes"}, "accelerate"),
        ({"mode": "minimum"}, "mode"),
        ({"threshold_mode": "relative"}, "threshold_mode"),
    ],
)
def test_config_validation_names_parameter_and_value(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must .*got") as info:
        GreedyConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_bound_validation():
    cfg = GreedyConfig()
    with pytest.raises(ValueError, match="min_lr .* must be <= max_lr"):
        GreedyController(cfg, [0.1], min_lr=0.5, max_lr=0.2)
    with pytest.raises(ValueError, match=r"min_lr has 1 entries \(\[0.01\]\), expected one per parameter group"):
        GreedyController(cfg, [0.1, 0.2], min_lr=[0.01])
    with pytest.raises(ValueError, match=r"max_lr\[1\] must be a finite number"):
        GreedyController(cfg, [0.1, 0.2], max_lr=[1.0, float("inf")])
    # transformers' default min_lr=1e-3 above an Adam LR of 1e-4 is refused, not silently broken.
    with pytest.raises(ValueError, match="outside"):
        GreedyController(cfg, [1e-4], min_lr=1e-3, max_lr=1.0)


def test_default_bounds_are_relative_to_initial_lr():
    c = GreedyController(GreedyConfig(), [0.1, 0.02])
    assert c.min_lrs == pytest.approx([0.01, 0.002])
    assert c.max_lrs == pytest.approx([0.1, 0.02])
