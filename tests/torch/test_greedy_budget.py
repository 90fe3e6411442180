"""Budget-aware GreedyLR: the envelope, the phase rules, resume, bad budgets, composition."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LinearLR, SequentialLR

from learnlr import GreedyLR
from learnlr.control.budget import Budget, envelope
from learnlr.control.schedule import BUDGET_DEFAULTS, patience_for, resolve


def _reference_envelope(t: int, total: int, warmup: int, anneal: int) -> float:
    """Slow, obvious version of control.budget.envelope (1-sqrt shape)."""
    t = min(max(t, 0), total - 1)
    value = 1.0
    if warmup > 0 and t < warmup:
        value *= (t + 1) / warmup
    start = total - anneal
    if anneal > 0 and t >= start:
        done = t - start + 1  # anneal steps made so far, this one included
        value *= 1.0 - math.sqrt(done / (anneal + 1))
    return value


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 400), data=st.data())
def test_envelope_matches_the_slow_reference(total, data):
    warmup = data.draw(st.integers(0, total))
    anneal = data.draw(st.integers(0, total - warmup))
    for t in range(-2, total + 3):
        assert envelope(t, total, warmup, anneal) == pytest.approx(
            _reference_envelope(t, total, warmup, anneal), abs=1e-12)


def _sgd(lrs=(0.1, 0.02)):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])


def _run(sched: GreedyLR, metrics) -> list[list[float]]:
    out = []
    for m in metrics:
        sched.step(m)
        out.append([float(g["lr"]) for g in sched.optimizer.param_groups])
    return out


def test_anneal_reaches_about_zero_at_the_last_step_and_holds_past_it():
    opt = _sgd()
    sched = GreedyLR(opt, total_steps=1000)
    lrs = _run(sched, [1.0] * 1000)  # flat loss: GreedyLR lowers, never raises
    stable = sched.stable_lrs
    assert lrs[-2][0] < 0.01 * stable[0]  # the LR of the last update (step 999)
    assert lrs[-2][0] > 0
    more = _run(sched, [1.0, math.nan, -5.0, 1e308] * 10)  # past the budget: hold, never raise
    assert more == [lrs[-1]] * len(more)
    assert lrs[-1][0] >= 0


@pytest.mark.parametrize("kwargs", [
    {"anneal_fraction": 0.0},               # no anneal: the stable phase reaches the end
    {"anneal_fraction": 0.2},
    {"anneal_fraction": 0.0, "sync_every": 3},  # the buffered path decides the same way
])
def test_no_decision_past_the_budget_the_final_lr_holds(kwargs):
    # A falling loss makes GreedyLR climb: before the fix it kept climbing past total_steps.
    sched = GreedyLR(_sgd(), total_steps=12, patience=0, window=1, increase_every=1,
                     factor=0.5, max_lr=[10.0, 2.0], **kwargs)
    falling = [1.0 / (1 + t) for t in range(40)]
    lrs = _run(sched, falling[:12])
    stable = list(sched.stable_lrs)
    more = _run(sched, falling[12:])
    if kwargs.get("sync_every"):
        sched.flush()
        more.append([float(g["lr"]) for g in sched.optimizer.param_groups])
    assert more == [lrs[-1]] * len(more)
    assert sched.stable_lrs == stable
    assert stable[0] > 0.1  # it did climb inside the budget


def test_per_group_ratio_is_kept_through_warmup_stable_and_anneal():
    opt = _sgd((0.1, 0.02))
    sched = GreedyLR(opt, total_steps=300, warmup_steps=30)
    metrics = [1.0 / (1 + t) if t < 150 else 1.0 + 0.01 * t for t in range(300)]
    for lr in _run(sched, metrics):
        assert lr[0] / lr[1] == pytest.approx(5.0)


def test_warmup_is_linear_and_metrics_during_it_are_not_observed():
    opt = _sgd((0.1,))
    sched = GreedyLR(opt, total_steps=200, warmup_steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 10)  # the first update's LR
    lrs = _run(sched, [10.0 - t for t in range(9)])
    assert [lr[0] for lr in lrs] == pytest.approx([0.1 * (t + 2) / 10 for t in range(9)])
    assert sched.controller.num_calls == 0  # the ramping loss says nothing about the LR


def test_no_increase_inside_the_anneal_but_decreases_still_apply():
    opt = _sgd((0.1,))
    sched = GreedyLR(opt, total_steps=100, anneal_fraction=0.5, patience=0, window=1)
    _run(sched, [1.0 / (1 + t) for t in range(49)])  # improving: raises the stable LR
    peak = sched.stable_lrs[0]
    assert peak > 0.1
    _run(sched, [1.0 / (50 + t) for t in range(20)])  # still improving, now in the anneal
    assert sched.stable_lrs[0] == peak
    _run(sched, [5.0] * 5)  # worse: decreases apply
    assert sched.stable_lrs[0] < peak


def test_budget_defaults_lower_the_lr_10x_within_the_adaptation_fraction():
    sched = GreedyLR(_sgd((0.1,)), total_steps=2000)
    stable_phase = 2000 - 400
    calls = 0
    while sched.stable_lrs[0] > 0.01 * (1 + 1e-9) and calls < stable_phase:
        sched.step(1.0)  # never better than the first value: a decrease every patience + 1 calls
        calls += 1
    assert sched.stable_lrs[0] == pytest.approx(0.01)
    assert calls <= BUDGET_DEFAULTS["adaptation"] * stable_phase + 60  # + the window filling
    assert sched.min_lrs == pytest.approx([0.01])


def test_budget_defaults_climb_increase_every_times_slower_than_they_descend():
    sched = GreedyLR(_sgd((0.01,)), total_steps=2000)
    for t in range(2000 - 400):  # the stable phase, the loss improving on every call
        sched.step(1.0 / (1 + t))
    # 10x down takes `adaptation` of the stable phase, so the whole phase climbs
    # 10 ** (1 / (adaptation * increase_every)).
    expected = 10 ** (1 / (BUDGET_DEFAULTS["adaptation"] * BUDGET_DEFAULTS["increase_every"]))
    assert sched.stable_lrs[0] / 0.01 == pytest.approx(expected, rel=0.15)
    assert sched.max_lrs == pytest.approx([0.1])


def test_patience_rule_scales_with_the_budget():
    short = patience_for(240, 0.9, 0.25)
    long_ = patience_for(6400, 0.9, 0.25)
    assert short < long_
    decisions = math.log(10) / math.log(1 / 0.9)
    assert (long_ + 1) * decisions == pytest.approx(0.25 * 6400, rel=0.05)


@pytest.mark.parametrize("bad", [0, -3, 1.5, "100", True, None])
def test_bad_total_steps_is_a_value_error_naming_it(bad):
    if bad is None:
        with pytest.raises(ValueError, match="warmup_steps"):
            GreedyLR(_sgd(), warmup_steps=5)
        return
    with pytest.raises(ValueError, match="total_steps"):
        GreedyLR(_sgd(), total_steps=bad)


@pytest.mark.parametrize("warmup", [9, 10])
def test_a_warmup_that_leaves_no_room_for_the_anneal_is_a_value_error(warmup):
    # Before, the anneal was cut to fit: warmup_steps=10 of 10 ended at the full LR.
    with pytest.raises(ValueError, match=rf"warmup_steps must be <= .* = 8, got {warmup}"):
        GreedyLR(_sgd(), total_steps=10, warmup_steps=warmup)
    assert GreedyLR(_sgd(), total_steps=10, warmup_steps=8).budget.anneal_steps == 2


def test_a_refused_state_leaves_the_scheduler_as_it_was():
    sched = GreedyLR(_sgd(), total_steps=100, warmup_steps=10)
    _run(sched, [1.0 / (1 + t) for t in range(40)])
    before = json.dumps(sched.state_dict())
    lrs = [g["lr"] for g in sched.optimizer.param_groups]
    good = json.loads(before)
    other_warmup = {**good, "budget": {**good["budget"], "warmup_steps": 20}}
    bad_ceiling = {**other_warmup, "controller": {**good["controller"], "ceiling_lrs": [0.1]}}
    no_counter = {**good, "controller": {k: v for k, v in good["controller"].items()
                                         if k != "num_good"}}
    for state, message in ((bad_ceiling, "ceiling_lrs has 1 entries"),
                           (no_counter, "missing \\['num_good'\\]"),
                           ({**good, "last_epoch": None}, "not a GreedyLR state")):
        with pytest.raises(ValueError, match=message):
            sched.load_state_dict(state)
        assert json.dumps(sched.state_dict()) == before
        assert [g["lr"] for g in sched.optimizer.param_groups] == lrs
    assert sched.budget.warmup_steps == 10


def test_a_metric_tensor_of_several_elements_is_a_value_error():
    sched = GreedyLR(_sgd(), total_steps=10)
    with pytest.raises(ValueError, match=r"one-element tensor, got shape \(2,\)"):
        sched.step(torch.tensor([1.0, 2.0]))


def test_a_max_lr_under_the_initial_lr_names_max_lr():
    with pytest.raises(ValueError, match=r"^max_lr \(0.01\) must be >= the initial lr \(0.1\)"):
        GreedyLR(_sgd((0.1,)), max_lr=0.01)


def test_resume_with_fewer_total_steps_than_taken_is_a_value_error():
    sched = GreedyLR(_sgd(), total_steps=100)
    _run(sched, [1.0] * 60)
    state = json.loads(json.dumps(sched.state_dict()))
    with pytest.raises(ValueError, match="total_steps=50 is fewer than the 60 steps"):
        GreedyLR(_sgd(), total_steps=50).load_state_dict(state)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metrics=st.lists(st.floats(0.01, 10.0), min_size=20, max_size=160),
    data=st.data(),
    sync_every=st.sampled_from([1, 3]),
)
def test_resume_is_bit_exact_at_any_cut_inside_or_outside_the_anneal(metrics, data, sync_every):
    total = len(metrics)
    cut = data.draw(st.integers(0, total))
    kw = {"total_steps": total, "warmup_steps": total // 10, "patience": 1, "window": 3,
          "sync_every": sync_every}
    whole = _run(GreedyLR(_sgd(), **kw), metrics)
    first = GreedyLR(_sgd(), **kw)
    head = _run(first, metrics[:cut])
    state = json.loads(json.dumps(first.state_dict()))  # strict JSON round trip
    second = GreedyLR(_sgd(), **kw)
    second.load_state_dict(state)
    assert head + _run(second, metrics[cut:]) == whole


def test_resolve_keeps_the_reactive_defaults_without_a_budget():
    r = resolve()
    assert r.budget is None and r.max_lr_ratio == 1.0
    assert (r.config.factor, r.config.patience, r.config.window) == (0.95, 10, 50)
    b = resolve(total_steps=300)
    assert b.budget == Budget.from_fraction(300) and b.max_lr_ratio == 10.0


def test_warmup_keyword_is_renamed_with_advice():
    with pytest.raises(TypeError, match="warmup_steps"):
        GreedyLR(_sgd(), warmup=3)
    with pytest.raises(TypeError, match="keep_decreasing"):
        GreedyLR(_sgd(), cooldown=3)


def test_greedy_after_a_linear_warmup_keeps_its_bounds_relative_to_the_target_lr():
    opt = _sgd((0.1,))
    warm = LinearLR(opt, start_factor=0.01, total_iters=5)
    sched = GreedyLR(opt, window=1)
    assert sched.max_lrs == pytest.approx([0.1]) and sched.min_lrs == pytest.approx([0.01])
    for _ in range(5):
        opt.step()
        warm.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    _run(sched, [1.0] * 12)  # one decrease: x0.95, not a 10x cut
    assert opt.param_groups[0]["lr"] == pytest.approx(0.095)


def test_sequential_lr_with_greedy_fails_at_construction_with_advice():
    opt = _sgd((0.1,))
    warm = LinearLR(opt, start_factor=0.01, total_iters=5)
    sched = GreedyLR(opt)
    with pytest.raises(ValueError, match="warmup_steps"):
        SequentialLR(opt, [warm, sched], milestones=[5])


def test_per_call_fast_path_matches_the_deferred_path_at_every_flush():
    metrics = [1.0 / (1 + t) if t % 40 < 25 else 2.0 for t in range(200)]
    kw = {"total_steps": 200, "warmup_steps": 20, "patience": 1, "window": 3}
    fast, deferred = GreedyLR(_sgd(), **kw), GreedyLR(_sgd(), sync_every=4, **kw)
    for t, m in enumerate(metrics):
        fast.step(m)
        deferred.step(m)
        if (t + 1) % 4 == 0:  # after each flush both have decided on the same metrics
            assert deferred.stable_lrs == fast.stable_lrs
            assert deferred.get_last_lr() == fast.get_last_lr()
    assert fast.controller.num_calls == 180  # warmup metrics are not observed


def test_a_state_resumes_only_into_the_same_mode():
    budget, reactive = GreedyLR(_sgd(), total_steps=100), GreedyLR(_sgd())
    _run(budget, [1.0] * 5)
    _run(reactive, [1.0] * 5)
    with pytest.raises(ValueError, match="without total_steps"):
        GreedyLR(_sgd(), total_steps=100).load_state_dict(reactive.state_dict())
    with pytest.raises(ValueError, match="with total_steps"):
        GreedyLR(_sgd()).load_state_dict(budget.state_dict())


def test_a_run_stepped_past_its_budget_resumes_with_the_same_budget():
    metrics = [1.0 / (1 + t % 4) for t in range(16)]
    whole = _run(GreedyLR(_sgd(), total_steps=10), metrics)
    first = GreedyLR(_sgd(), total_steps=10)
    head = _run(first, metrics[:12])  # the user's total_steps undercounted
    again = GreedyLR(_sgd(), total_steps=10)
    again.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + _run(again, metrics[12:]) == whole


def test_metrics_buffered_in_a_state_are_decided_after_loading_into_a_stepped_scheduler():
    saver = GreedyLR(_sgd(), total_steps=100, sync_every=4, patience=0, window=1)
    _run(saver, [1.0, 0.9])  # two metrics still buffered
    state = json.loads(json.dumps(saver.state_dict()))
    assert saver.pending == 2
    loader = GreedyLR(_sgd(), total_steps=100, patience=0, window=1)
    loader.step(5.0)  # already past its first call (the fast path)
    loader.load_state_dict(state)
    loader.step(0.8)
    assert loader.pending == 0 and loader.controller.num_calls == 3


def test_adaptation_without_a_budget_is_a_value_error():
    with pytest.raises(ValueError, match="adaptation"):
        GreedyLR(_sgd(), adaptation=0.5)
    with pytest.raises(ValueError, match="anneal_fraction"):
        GreedyLR(_sgd(), anneal_fraction=3)
