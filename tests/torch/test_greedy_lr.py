import json
import math

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LRScheduler

from learnlr import GreedyLR

any_metric = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
finite_metric = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# Metrics that trend and plateau, so increases, decreases and clamping all happen.
walk_metric = st.lists(st.sampled_from([-1.0, -0.1, 0.0, 0.0, 0.1, 1.0]), min_size=1, max_size=300)


def two_group_optimizer(lr0=0.1, lr1=0.01, cls=torch.optim.SGD):
    w = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(1))
    return cls([{"params": [w], "lr": lr0}, {"params": [b], "lr": lr1}])


def cumulative(steps, start=10.0):
    out, v = [], start
    for s in steps:
        v += s
        out.append(v)
    return out


def test_is_a_real_lr_scheduler():
    opt = two_group_optimizer()
    sched = GreedyLR(opt)
    assert isinstance(sched, LRScheduler)
    assert sched.base_lrs == [0.1, 0.01]
    assert all(g["initial_lr"] == g["lr"] for g in opt.param_groups)
    assert sched.get_last_lr() == [0.1, 0.01]
    assert sched.last_epoch == 0


def test_accepts_zero_dim_tensor_and_requires_a_metric():
    opt = two_group_optimizer()
    sched = GreedyLR(opt, patience=0, window=1, max_lr=1.0)
    sched.step(torch.tensor(1.0))
    assert sched.get_last_lr()[0] > 0.1
    with pytest.raises(TypeError, match="needs the metric"):
        sched.step()


def test_expected_lr_lists_per_step_two_groups():
    opt = two_group_optimizer()
    sched = GreedyLR(opt, factor=0.5, patience=1, window=1, min_lr=[0.05, 0.001], max_lr=1.0)
    seen = []
    for v in [5, 4, 3, 3, 3, 3, 3, 3]:
        sched.step(v)
        seen.append(sched.get_last_lr())
    assert seen == [
        [0.1, 0.01],
        [0.2, 0.02],  # two improvements > patience 1
        [0.2, 0.02],
        [0.2, 0.02],
        [0.1, 0.01],  # two non-improvements
        [0.1, 0.01],
        [0.05, 0.005],
        [0.05, 0.005],
    ]
    assert [g["lr"] for g in opt.param_groups] == seen[-1]


def test_respects_lrs_changed_by_someone_else():
    opt = two_group_optimizer()
    sched = GreedyLR(opt, factor=0.5, patience=0, window=1, min_lr=0.0, max_lr=10.0)
    opt.param_groups[0]["lr"] = 0.4
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.8)


def test_tensor_learning_rates_are_updated_in_place():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([w], lr=torch.tensor(0.01))
    lr_tensor = opt.param_groups[0]["lr"]
    sched = GreedyLR(opt, patience=0, window=1, max_lr=1.0)
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] is lr_tensor
    assert float(lr_tensor) == pytest.approx(0.01 / 0.95)


def test_tensor_learning_rates_follow_the_budget_envelope_in_place():
    # Warmup and anneal write the LR on every call; a tensor LR must be filled in place there
    # and end where a float-LR twin on the same losses ends.
    def build(lr):
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
        return opt, GreedyLR(opt, total_steps=40, warmup_steps=4, window=1)

    opt_t, sched_t = build(torch.tensor(0.01))
    opt_f, sched_f = build(0.01)
    lr_tensor = opt_t.param_groups[0]["lr"]
    seen = []
    for i in range(45):
        loss = 1.0 / (1 + i) + 0.1 * (i % 3)
        sched_t.step(loss)
        sched_f.step(loss)
        assert opt_t.param_groups[0]["lr"] is lr_tensor
        assert float(lr_tensor) == pytest.approx(opt_f.param_groups[0]["lr"], rel=1e-6)
        seen.append(float(lr_tensor))
    assert seen[0] < seen[4]  # warmup raised it
    assert seen[-1] < 1e-2 * max(seen)  # the anneal brought it near 0 (8 anneal steps)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"factor": 1.5}, "factor"),
        ({"factor": float("nan")}, "factor"),
        ({"patience": -1}, "patience"),
        ({"keep_decreasing": -1}, "keep_decreasing"),
        ({"keep_increasing": -1}, "keep_increasing"),
        ({"threshold": -0.1}, "threshold"),
        ({"window": 0}, "window"),
        ({"min_lr": 0.5, "max_lr": 0.2}, "min_lr"),
        ({"min_lr": [0.001]}, "min_lr"),
        ({"max_lr": [1.0, 1.0, 1.0]}, "max_lr"),
        ({"mode": "up"}, "mode"),
        ({"threshold_mode": "percent"}, "threshold_mode"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GreedyLR(two_group_optimizer(), **kwargs)


def test_rejects_non_optimizer():
    with pytest.raises(TypeError):
        GreedyLR([torch.zeros(1)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metrics=st.lists(any_metric, max_size=200),
    factor=st.floats(0.05, 0.99),
    patience=st.integers(0, 5),
    window=st.integers(1, 8),
    cooldown=st.integers(0, 3),
    warmup=st.integers(0, 3),
    reset_after=st.one_of(st.none(), st.integers(1, 4)),
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    threshold=st.sampled_from([0.0, 1e-4, 0.5, 1e300]),
)
def test_lr_stays_finite_and_within_bounds(metrics, factor, patience, window, cooldown, warmup,
                                           reset_after, mode, threshold_mode, threshold):
    opt = two_group_optimizer()
    sched = GreedyLR(opt, factor=factor, patience=patience, window=window, keep_decreasing=cooldown,
                     keep_increasing=warmup, reset_after=reset_after, mode=mode,
                     threshold_mode=threshold_mode, threshold=threshold)
    for m in metrics:
        sched.step(m)  # never raises, whatever the metric
        for lr, lo, hi in zip(sched.get_last_lr(), sched.min_lrs, sched.max_lrs):
            assert math.isfinite(lr)
            assert lo * (1 - 1e-12) <= lr <= hi * (1 + 1e-12)
        if sched.best is not None:
            assert math.isfinite(sched.best)
    json.dumps(sched.state_dict(), allow_nan=False)  # strict JSON whatever the inputs were


@settings(max_examples=100, deadline=None)
@given(steps=walk_metric, factor=st.floats(0.3, 0.99), patience=st.integers(0, 4), window=st.integers(1, 5))
def test_per_group_ratio_preserved_with_relative_bounds(steps, factor, patience, window):
    opt = two_group_optimizer(0.3, 0.003)
    sched = GreedyLR(opt, factor=factor, patience=patience, window=window)
    for m in cumulative(steps):
        sched.step(m)
        lr0, lr1 = sched.get_last_lr()
        assert lr0 / lr1 == pytest.approx(100.0, rel=1e-9)


def with_nans(values, data):
    """Sprinkle non-finite metrics into a sequence at hypothesis-chosen places."""
    out = list(values)
    for _ in range(data.draw(st.integers(0, 3))):
        out.insert(data.draw(st.integers(0, len(out))),
                   data.draw(st.sampled_from([math.nan, math.inf, -math.inf])))
    return out


def run_with_resume(metrics, cut, kwargs):
    """Train-loop style: checkpoint at `cut` via JSON, rebuild optimizer + scheduler, continue."""
    opt = two_group_optimizer(cls=torch.optim.AdamW)
    sched = GreedyLR(opt, **kwargs)
    for m in metrics[:cut]:
        sched.step(m)
    ckpt = json.loads(json.dumps({"sched": sched.state_dict()}, allow_nan=False))
    opt_state = opt.state_dict()
    opt2 = two_group_optimizer(cls=torch.optim.AdamW)
    sched2 = GreedyLR(opt2, **kwargs)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(ckpt["sched"])
    out = []
    for m in metrics[cut:]:
        sched2.step(m)
        out.append(sched2.get_last_lr())
    return out, [g["lr"] for g in opt2.param_groups]


@settings(max_examples=80, deadline=None)
@given(
    steps=walk_metric,
    data=st.data(),
    window=st.integers(1, 7),
    cooldown=st.integers(0, 2),
    warmup=st.integers(0, 2),
    reset_after=st.one_of(st.none(), st.integers(1, 3)),
)
def test_resume_at_random_cut_continues_identical_trajectory(steps, data, window, cooldown, warmup, reset_after):
    metrics = with_nans(cumulative(steps), data)
    cut = data.draw(st.integers(0, len(metrics)))
    kwargs = dict(
        factor=data.draw(st.floats(0.3, 0.99)), patience=data.draw(st.integers(0, 3)),
        mode=data.draw(st.sampled_from(["min", "max"])),
        threshold_mode=data.draw(st.sampled_from(["rel", "abs"])),
        threshold=data.draw(st.sampled_from([0.0, 0.01])),
        window=window, keep_decreasing=cooldown, keep_increasing=warmup, reset_after=reset_after,
    )
    opt = two_group_optimizer(cls=torch.optim.AdamW)
    ref = GreedyLR(opt, **kwargs)
    expected = []
    for i, m in enumerate(metrics):
        ref.step(m)
        if i >= cut:
            expected.append(ref.get_last_lr())
    got, final = run_with_resume(metrics, cut, kwargs)
    assert got == expected  # bit-for-bit
    assert final == [g["lr"] for g in opt.param_groups]


def hf_trajectory(metrics, eps, **kw):
    opt = two_group_optimizer(0.05, 0.02)
    hf = transformers.GreedyLR(opt, smooth=False, reset_start=10**12, eps=eps, **kw)
    out = []
    for m in metrics:
        hf.step(m)
        out.append([g["lr"] for g in opt.param_groups])
    return out


def ours_trajectory(metrics, **kw):
    opt = two_group_optimizer(0.05, 0.02)
    sched = GreedyLR(opt, window=1, keep_decreasing=0, keep_increasing=0, reset_after=None, threshold_mode="abs", **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(sched.get_last_lr())
    return out


@settings(max_examples=150, deadline=None)
@given(
    metrics=st.one_of(st.lists(finite_metric, max_size=200), walk_metric.map(cumulative)),
    factor=st.floats(0.05, 0.99),
    patience=st.integers(0, 6),
    threshold=st.sampled_from([0.0, 1e-6, 0.01, 0.5]),
    mode=st.sampled_from(["min", "max"]),
    bounds=st.sampled_from([(1e-3, 1.0), ([0.001, 0.0002], [0.2, 0.5]), (0.0, 10.0)]),
)
def test_equivalent_to_transformers_greedylr(metrics, factor, patience, threshold, mode, bounds):
    kw = dict(factor=factor, patience=patience, threshold=threshold, mode=mode,
              min_lr=bounds[0], max_lr=bounds[1])
    ours = ours_trajectory(metrics, **kw)
    # transformers also skips LR changes smaller than its absolute eps (1e-8 by default), a rule
    # learnlr does not have; with eps=0 the two are the same algorithm, bit for bit.
    assert ours == hf_trajectory(metrics, eps=0.0, **kw)


def test_nan_does_not_poison_smoothing_unlike_transformers():
    """Weakness 3 of the peer: one NaN in the smoothing window makes every later call 'bad'."""
    seq = [1.0 - 0.01 * i for i in range(20)] + [float("nan")] + [0.8 - 0.01 * i for i in range(60)]
    opt = two_group_optimizer(0.01, 0.01)
    ours = GreedyLR(opt, patience=3, window=5, min_lr=1e-4, max_lr=1.0)
    opt_hf = two_group_optimizer(0.01, 0.01)
    hf = transformers.GreedyLR(opt_hf, patience=3, smooth=True, window_size=5, min_lr=1e-4, max_lr=1.0)
    for m in seq:
        ours.step(m)
        hf.step(m)
    # Steadily improving loss after one NaN: ours keeps raising the LR, the peer keeps lowering.
    assert ours.get_last_lr()[0] > 0.01
    assert hf.get_last_lr()[0] < 0.01


def test_param_group_added_after_construction_is_an_error_not_silently_unscheduled():
    opt = two_group_optimizer()
    sched = GreedyLR(opt, patience=0, window=1, max_lr=1.0)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5})
    with pytest.raises(ValueError, match="3 learning rates .* 2 parameter groups"):
        sched.step(1.0)


def test_out_of_bounds_lr_set_by_someone_else_is_clamped_back_on_both_sides():
    opt = two_group_optimizer()
    sched = GreedyLR(opt, patience=0, window=1, factor=0.5, min_lr=0.01, max_lr=0.2)
    opt.param_groups[0]["lr"] = 5.0
    opt.param_groups[1]["lr"] = 0.0
    sched.step(1.0)  # an increase
    assert sched.get_last_lr() == [0.2, 0.01]


def test_numpy_hyperparameters_and_huge_int_metrics():
    import numpy as np  # (a dependency of learnlr: a broken install must fail, not skip)

    sched = GreedyLR(two_group_optimizer(), factor=np.float32(0.9), patience=np.int64(5), window=1)
    state = sched.state_dict()
    assert json.loads(json.dumps(state, allow_nan=False))["controller"]["config"]["patience"] == 5
    sched.step(10**400)  # beyond float range: a non-finite metric, never an exception
    assert sched.controller.num_bad == 1


def test_works_with_torch_releases_without_the_initial_mode_flag(monkeypatch):
    """torch < 2.6 calls step() from LRScheduler.__init__ with no `_is_initial` flag."""
    from torch.optim import lr_scheduler

    def old_initial_step(self):
        self._step_count = 0
        self.step()

    monkeypatch.delattr(lr_scheduler.LRScheduler, "_is_initial", raising=False)
    monkeypatch.setattr(lr_scheduler.LRScheduler, "_initial_step", old_initial_step)
    sched = GreedyLR(two_group_optimizer())
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1, 0.01]


def test_multi_element_tensor_metric_is_rejected_clearly():
    sched = GreedyLR(two_group_optimizer(), sync_every=4)
    with pytest.raises(ValueError, match="one-element tensor"):
        sched.step(torch.ones(3))
    assert sched.pending == 0
