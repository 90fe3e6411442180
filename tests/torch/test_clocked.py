"""ClockedGreedyLR's two signals: decisions on decide(val), the brake on tick(train_loss)."""

import json
import math

import pytest
import torch

from learnlr.control.brake import GUARD_WATCH
from learnlr.control.schedule import BUDGET_PER_EVAL, EVAL_MIN_LR_RATIO, per_eval_defaults
from learnlr.torch.clocked import ClockedGreedyLR


def make(brake=1.0, total_steps=200, warmup_steps=0, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return ClockedGreedyLR(opt, total_steps=total_steps, warmup_steps=warmup_steps, brake=brake,
                           **{**BUDGET_PER_EVAL, **kw})


def losses_with_a_blowup(steps=200, at=60):
    """Falling, then 3x above its best from step ``at`` on (an unstable LR)."""
    return [1.0 / (1 + 0.05 * t) if t < at else 3.0 for t in range(steps)]


def resumes_bit_for_bit(losses, cuts, **kw):
    """Run ``make(**kw)`` over ``losses`` with a decision after every 10th step; for each cut,
    stop there, save the state through JSON and go on in a fresh scheduler: the LRs must be the
    uninterrupted run's. Returns those LRs."""
    vals = {t: 0.5 + 0.01 * (t % 7) for t in range(9, len(losses), 10)}

    def run(sched, steps):
        out = []
        for t in steps:
            sched.tick(losses[t])
            if t in vals:
                sched.decide(vals[t])
            out.append(sched.get_last_lr()[0])
        return out

    full = run(make(**kw), range(len(losses)))
    for cut in cuts:
        first = make(**kw)
        head = run(first, range(cut))
        second = make(**kw)
        second.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert head + run(second, range(cut, len(losses))) == full
    return full


def test_the_brake_takes_one_descent_when_the_training_loss_doubles():
    sched = make()
    window = sched.brake.window
    lrs = []
    for loss in losses_with_a_blowup():
        sched.tick(loss)
        lrs.append(sched.stable_lrs[0])
    assert window == 50  # the paper's smoothing window, whatever the budget
    first = next(t for t, lr in enumerate(lrs) if lr < 0.1)
    assert 60 <= first < 60 + window  # once the window's mean is past twice its best
    assert lrs[first] == pytest.approx(0.1 * BUDGET_PER_EVAL["factor"])
    # At most one descent per window: the LR after t steps of instability
    drops = sum(1 for a, b in zip(lrs, lrs[1:]) if b < a)
    assert 1 < drops <= 1 + (len(lrs) - first) // window
    assert sched.brake.num_brakes == drops
    assert sched.controller.num_calls == 0  # the brake is not a decision on the training loss


def test_without_a_brake_training_losses_change_nothing():
    sched = make(brake=None)
    for loss in losses_with_a_blowup():
        sched.tick(loss)
    assert sched.stable_lrs[0] == 0.1 and sched.brake is None


def test_warmup_updates_are_not_shown_to_the_brake():
    sched = make(warmup_steps=40)
    for loss in [1.0] * 20 + [1.9] * 20:  # a rise inside the LR warmup, under the guard's 2x
        sched.tick(loss)
    assert sched.brake.num_brakes == 0 and len(sched.brake.values()) == 0
    assert not sched.guard.fired and sched.budget.warmup_steps == 40


def test_the_warmup_guard_ends_a_warmup_that_blows_up_at_a_tenth_of_the_lr_of_the_best_loss():
    sched = make(warmup_steps=40, min_lr_ratio=EVAL_MIN_LR_RATIO)  # (0.1x would bind here)
    losses = [2.0 - 0.1 * t for t in range(10)] + [1.2, 1.5, 2.5, 4.0, 8.0, 30.0]
    ramps = []
    for loss in losses:
        sched.tick(loss)
        ramps.append(sched.get_last_lr()[0] / 0.1)
        if sched.guard.fired:
            break
    # The 5-loss mean is best over the losses of updates 6-10 (1.24; the ramp is 11 / 40 at
    # update 10) and past twice that after update 14 (3.44). The warmup ends there: every later
    # update is a stable-phase one.
    assert len(ramps) == 15
    assert sched.budget.warmup_steps == 15
    assert sched.stable_lrs == pytest.approx([0.1 * 11 / 40 * 0.1])
    assert sched.get_last_lr() == pytest.approx(sched.stable_lrs)
    for _ in range(5):
        sched.tick(30.0)  # the losses of the stable phase go to the brake now
    assert len(sched.brake.values()) == 5
    assert sched.stable_lrs == pytest.approx([0.1 * 11 / 40 * 0.1])  # it fires once


def test_the_warmup_guard_resumes_exactly_after_it_fired():
    losses = [2.0 - 0.1 * t for t in range(10)] + [4.0] * 10 + [0.5] * 80
    full = resumes_bit_for_bit(losses, (3, 12, 16, 30, 60), total_steps=100, warmup_steps=40)
    assert full[20] < full[9]  # the guard fired (the warmup would still be ramping up)


def _blow_up_after(warmup: int, at: int) -> list[float]:
    """Falling through the warmup and after it, then 30 from update ``at`` on."""
    return [2.0 / (1 + 0.1 * t) for t in range(at)] + [30.0] * 10


def test_the_guard_watches_as_many_steps_again_at_the_peak_lr():
    # A run that dies right after its LR reaches the peak (SGD networks at 10x do): the guard
    # still watches (GUARD_WATCH x the warmup) and restarts GreedyLR's LR at a tenth of it.
    sched = make(warmup_steps=40)
    for loss in _blow_up_after(40, at=60):
        sched.tick(loss)
    assert sched.guard.fired and sched.budget.warmup_steps == 40  # no warmup to end any more
    assert sched.stable_lrs == pytest.approx([0.1 * 0.1])  # the best mean was at the peak
    assert sched.brake.num_brakes == 0  # faster than the 50-step brake


def test_past_the_watch_a_blow_up_is_the_brakes():
    sched = make(warmup_steps=40)
    for loss in _blow_up_after(40, at=round(GUARD_WATCH * 40) + 1):
        sched.tick(loss)
    assert not sched.guard.fired
    assert sched.stable_lrs == pytest.approx([0.1])  # the brake's mean has not doubled yet


def test_the_guard_resumes_exactly_inside_its_watch():
    losses = _blow_up_after(40, at=60) + [0.5] * 80
    full = resumes_bit_for_bit(losses, (39, 41, 55, 62, 66, 90), total_steps=200,
                               warmup_steps=40)
    assert full[70] < 0.5 * full[50]  # the guard fired after the warmup


def test_no_guard_without_a_brake_or_a_warmup():
    assert make(brake=None, warmup_steps=40).guard is None
    assert make(warmup_steps=0).guard is None


def test_the_warmup_guard_rescues_sgd_from_a_warmup_into_divergence():
    """A real least-squares model whose target LR is 10x past SGD's stability limit (2 / L):
    without the guard the ramp crosses the limit and the loss goes non-finite; with it the
    warmup ends and training converges."""

    def train(brake):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=gen)
        y = x @ torch.randn(8, 1, generator=gen)
        w = torch.nn.Parameter(torch.zeros(8, 1))
        limit = 2.0 / torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max().item()
        opt = torch.optim.SGD([w], lr=10 * limit)
        sched = ClockedGreedyLR(opt, total_steps=400, warmup_steps=100, brake=brake,
                                **BUDGET_PER_EVAL)
        loss = torch.tensor(0.0)
        for _ in range(400):
            loss = ((x @ w - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.tick(loss.item())
            if not torch.isfinite(loss):
                break
        return loss.item(), sched

    unguarded, _ = train(brake=None)
    guarded, sched = train(brake=1.0)
    assert not math.isfinite(unguarded) or unguarded > 1e6
    assert sched.guard.fired and guarded < 1e-3


def test_resume_mid_run_continues_bit_for_bit():
    resumes_bit_for_bit(losses_with_a_blowup(), (5, 64, 71, 150, 190))


def test_per_eval_defaults_depend_on_the_budget():
    from learnlr.control.greedy import PER_EVAL

    assert per_eval_defaults(True) == BUDGET_PER_EVAL
    assert per_eval_defaults(False) == PER_EVAL
    assert per_eval_defaults(True) is not BUDGET_PER_EVAL  # a copy: callers may add to it


def test_eval_greedy_lr_warms_up_over_the_default_fraction_of_the_budget():
    from learnlr import EvalGreedyLR
    from learnlr.control.schedule import EVAL_WARMUP_FRACTION, eval_warmup_steps

    assert eval_warmup_steps(200) == round(EVAL_WARMUP_FRACTION * 200) > 0
    assert eval_warmup_steps(40) == 2
    # Too short a budget to warm up: a 1-step warmup would not change the LR.
    assert eval_warmup_steps(1) == eval_warmup_steps(20) == eval_warmup_steps(29) == 0
    params = [torch.nn.Parameter(torch.zeros(1))]
    sched = EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=200)
    warm = sched.budget.warmup_steps
    assert warm == eval_warmup_steps(200)
    used = []
    for _ in range(warm + 1):
        used.append(sched.get_last_lr()[0])
        sched.step(1.0)
    assert used == pytest.approx([0.1 * (t + 1) / warm for t in range(warm)] + [0.1])
    # An evaluation of a warmup update is not a decision; the first one after it is.
    early = EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=200)
    for _ in range(warm):
        early.step(1.0)
    early.decide(0.5)
    assert early.controller.num_calls == 0
    early.step(1.0)
    early.decide(0.5)
    assert early.controller.num_calls == 1
    # warmup_steps=0 turns it off; a bad total_steps is named before any warmup is computed.
    off = EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=200, warmup_steps=0)
    assert off.budget.warmup_steps == 0 and off.get_last_lr() == [0.1]
    for bad in (0, -5, 2.5, "100"):
        with pytest.raises(ValueError, match="total_steps"):
            EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=bad)


def test_a_resumed_run_keeps_the_warmup_it_started_with():
    from learnlr import EvalGreedyLR

    def run(sched, steps):
        for _ in range(steps):
            sched.step(1.0)
        return json.loads(json.dumps(sched.state_dict()))

    def fresh(**kw):
        return EvalGreedyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), **kw)

    # A checkpoint from before the default warmup (none) resumes without one inserted ...
    state = run(fresh(total_steps=1000, warmup_steps=0), 20)
    resumed = fresh(total_steps=1000)
    assert resumed.budget.warmup_steps == 50
    resumed.load_state_dict(state)
    assert resumed.budget.warmup_steps == 0 and resumed.get_last_lr() == [0.1]
    # ... and a longer budget on resume does not restart the warmup (the anneal follows it).
    state = run(fresh(total_steps=1000), 60)
    longer = fresh(total_steps=4000)
    longer.load_state_dict(state)
    assert longer.budget.warmup_steps == 50 and longer.get_last_lr() == [0.1]
    assert longer.budget.anneal_start == 4000 - round(0.2 * 4000)
    longer.step(1.0)
    longer.decide(0.5)
    assert longer.controller.num_calls == 1  # decisions are on, as after any warmup
    # Not started yet: the new scheduler's own warmup.
    unstarted = fresh(total_steps=4000)
    unstarted.load_state_dict(run(fresh(total_steps=1000, warmup_steps=0), 0))
    assert unstarted.budget.warmup_steps == 200


def test_eval_greedy_lr_compounds_descents_down_to_a_hundredth_of_its_lr():
    from learnlr import EvalGreedyLR
    from learnlr.control.schedule import EVAL_MIN_LR_RATIO

    def run(**kw):
        params = [torch.nn.Parameter(torch.zeros(1))]
        sched = EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=200, warmup_steps=0,
                             **kw)
        lrs = []
        for val in (0.5, *[0.6] * 6):  # a best, then six evaluations in a row without one
            sched.step(1.0)
            sched.decide(val)
            lrs.append(sched.get_last_lr()[0])
        return sched, lrs

    sched, lrs = run()
    assert sched.controller.config.accelerate
    assert sched.controller.min_lrs == pytest.approx([EVAL_MIN_LR_RATIO * 0.1])
    # The k-th in a row descends by 0.8 ** k, down to the floor at 0.01x.
    expected, lr = [0.1], 0.1
    for k in range(1, 7):
        lr = max(lr * 0.8 ** k, 0.001)
        expected.append(lr)
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(0.001) and lrs[-2] > 0.001
    # An explicit min_lr wins over the default floor; accelerate=False is one 0.8 per descent.
    assert run(min_lr=0.01)[1][-1] == pytest.approx(0.01)
    assert run(accelerate=False)[1] == pytest.approx([0.1 * 0.8 ** k for k in range(7)])
    for bad in (-0.1, 1.5, True, "0.01"):
        with pytest.raises(ValueError, match="min_lr_ratio"):
            run(min_lr_ratio=bad)


def run_evals(vals, **kw):
    """EvalGreedyLR at lr 0.1 (200 steps, no warmup): one step and one decision per value."""
    from learnlr import EvalGreedyLR

    params = [torch.nn.Parameter(torch.zeros(1))]
    sched = EvalGreedyLR(torch.optim.SGD(params, lr=0.1), total_steps=200, warmup_steps=0, **kw)
    lrs = []
    for val in vals:
        sched.step(1.0)
        sched.decide(val)
        lrs.append(sched.get_last_lr()[0])
    return sched, lrs


def test_eval_greedy_lr_climbs_while_the_validation_curve_does_not_slow_down():
    steady = (1.0, 0.875, 0.75, 0.625, 0.5)  # equal gains: a climb from the second gain on
    sched, lrs = run_evals(steady)
    assert sched.controller.config.climb_on_speedup
    assert lrs == pytest.approx([0.1, 0.1, 0.125, 0.15625, 0.1953125])
    slowing = (1.0, 0.9, 0.85, 0.82, 0.81)  # a curve that slows down: no climb before the 6th
    assert run_evals(slowing)[1] == pytest.approx([0.1] * 5)
    assert run_evals(steady, climb_on_speedup=False)[1] == pytest.approx([0.1] * 5)


def test_eval_greedy_lr_never_climbs_back_to_an_lr_that_spiked_the_validation_loss():
    # Equal gains climb to 0.15625; 1.3 (over twice the best 0.625) spikes there and descends.
    # After it, the 6th climb vote (at 0.375) and a speed-up (0.25) would climb back to 0.15625
    # and past it; the ceiling holds both.
    vals = (1.0, 0.875, 0.75, 0.625, 1.3, 0.5, 0.375, 0.25)
    sched, lrs = run_evals(vals)
    assert sched.controller.config.spike_ceiling
    assert sched.controller.ceiling_lrs == pytest.approx([0.15625])
    assert lrs[3:] == pytest.approx([0.15625, 0.125, 0.125, 0.125, 0.125])
    assert run_evals(vals, spike_ceiling=False)[1][-2:] == pytest.approx([0.15625, 0.1953125])


def test_bad_brake_margin_is_a_value_error():
    with pytest.raises(ValueError, match="brake margin"):
        make(brake=-1.0)


def test_eval_greedy_lr_is_the_clock_plus_brake_with_per_eval_defaults():
    from learnlr import EvalGreedyLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = EvalGreedyLR(opt, total_steps=200, warmup_steps=0)
    config = sched.controller.config
    keys = ("window", "patience", "factor", "increase_every", "accelerate")
    assert tuple(getattr(config, k) for k in keys) == tuple(BUDGET_PER_EVAL[k] for k in keys)
    # ClockedGreedyLR with the same settings, driven through tick()
    reference = make(min_lr_ratio=EVAL_MIN_LR_RATIO)
    for t, loss in enumerate(losses_with_a_blowup()):
        sched.step(loss)
        reference.tick(loss)
        if t % 20 == 19:
            sched.decide(0.5 + 0.01 * (t % 3))
            reference.decide(0.5 + 0.01 * (t % 3))
        assert sched.get_last_lr() == reference.get_last_lr()
    assert sched.brake.num_brakes > 0 and sched.controller.num_calls == 10
    # Without a budget: the reactive per-evaluation defaults and no brake; step() is the clock.
    reactive = EvalGreedyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert reactive.brake is None and reactive.controller.config.patience == 2
    reactive.step(5.0)
    assert reactive.controller.num_calls == 0 and reactive.get_last_lr() == [0.1]


def test_extreme_metrics_neither_raise_nor_break_strict_json():
    sched = make(total_steps=100, climb_on_speedup=True)
    sched.tick(1.0)
    sched.decide(1.7e308)
    sched.decide(-1.7e308)  # a gain of inf: the state still is strict JSON
    sched.decide(10**400)   # an int past the float range counts as +inf, as in GreedyLR.step
    sched.tick(10**400)
    state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    fresh = make(total_steps=100, climb_on_speedup=True)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == sched.state_dict()


def test_a_state_with_a_bad_brake_is_refused_and_changes_nothing():
    sched = make()
    for t in range(30):
        sched.tick(1.0 / (1 + t))
        if t % 10 == 9:
            sched.decide(0.5 - 0.01 * t)
    before = json.dumps(sched.state_dict())
    other = make()
    for t in range(80):
        other.tick(2.0)
        if t % 10 == 9:
            other.decide(1.0)
    state = other.state_dict()
    state["brake"]["window"]["size"] = 0
    with pytest.raises(ValueError):
        sched.load_state_dict(state)
    assert json.dumps(sched.state_dict()) == before
