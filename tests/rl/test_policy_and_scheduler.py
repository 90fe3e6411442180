"""Policy export/save/load (no pickle) and RLScheduler as a real LRScheduler."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.optim.lr_scheduler import LRScheduler

from learnlr.nmf import StochasticNMF, planted_problem, solve
from learnlr.rl import (
    PolicyConfig,
    PolicyNetwork,
    RLScheduler,
    load_policy,
    pretrained_path,
    save_policy,
)
from learnlr.rl.features import FEATURE_SETS


def _constant_policy(action: float, **config_kwargs) -> PolicyNetwork:
    """A policy whose output is ``action`` whatever it sees (weights zero, head bias = action)."""
    net = PolicyNetwork(PolicyConfig(**config_kwargs))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.fill_(action)
    return net


def test_save_load_round_trip_uses_safetensors_and_json(tmp_path):
    torch.manual_seed(0)
    net = PolicyNetwork(PolicyConfig(hidden_sizes=[8, 4], training={"seed": 3}))
    weights, config = save_policy(net, tmp_path / "p")
    assert weights.suffix == ".safetensors" and config.suffix == ".json"
    assert set(load_file(str(weights))) == set(net.state_dict())  # plain tensors, no pickle
    assert json.loads(config.read_text())["training"] == {"seed": 3}
    loaded = load_policy(tmp_path / "p")
    x = torch.randn(16, len(net.config.feature_names))
    torch.testing.assert_close(loaded(x), net(x))


def test_load_rejects_mismatched_features_and_missing_files(tmp_path):
    net = PolicyNetwork(PolicyConfig())
    _, config = save_policy(net, tmp_path / "p")
    raw = json.loads(config.read_text())
    raw["feature_names"] = ["something_else"]
    config.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="feature_names"):
        load_policy(tmp_path / "p")
    with pytest.raises(ValueError, match="does not exist"):
        load_policy(tmp_path / "missing")


@pytest.mark.parametrize("damage", ["unknown key", "wrong type", "not an object", "not json",
                                    "corrupt weights", "other layer sizes"])
def test_a_damaged_policy_file_is_a_value_error_naming_the_file(tmp_path, damage):
    weights, config = save_policy(PolicyNetwork(PolicyConfig(hidden_sizes=[8])), tmp_path / "p")
    raw = json.loads(config.read_text())
    if damage == "unknown key":
        config.write_text(json.dumps({**raw, "hiden_sizes": [8]}))
    elif damage == "wrong type":
        config.write_text(json.dumps({**raw, "hidden_sizes": 8}))
    elif damage == "not an object":
        config.write_text(json.dumps([raw]))
    elif damage == "not json":
        config.write_text("{" + config.read_text())
    elif damage == "corrupt weights":
        weights.write_bytes(b"\x00garbage" * 10)
    else:
        config.write_text(json.dumps({**raw, "hidden_sizes": [16]}))
    with pytest.raises(ValueError) as info:
        load_policy(tmp_path / "p")
    assert str(tmp_path / "p") in str(info.value)


def test_rl_scheduler_is_an_lr_scheduler_and_needs_the_metric():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = RLScheduler(opt, _constant_policy(0.0), total_steps=10)
    assert isinstance(sched, LRScheduler)
    with pytest.raises(TypeError, match="metric"):
        sched.step()
    with pytest.raises(ValueError, match="total_steps"):
        RLScheduler(opt, _constant_policy(0.0), total_steps=0)


def test_actions_change_the_lr_every_k_steps_within_the_bounds():
    # Two groups with different LRs: both move by the same factor, group 0 is clipped.
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    policy = _constant_policy(1.0, steps_per_action=3, max_log_change=math.log(2.0))
    sched = RLScheduler(opt, policy, total_steps=30, max_lr_factor=5.0)
    seen = []
    for _ in range(12):
        sched.step(1.0)
        seen.append([g["lr"] for g in opt.param_groups])
    # Decisions at calls 1, 4, 7, 10: 0.1 -> 0.2 -> 0.4 -> 0.5 (cap 5 x 0.1) -> 0.5
    expected0 = [0.2] * 3 + [0.4] * 3 + [0.5] * 3 + [0.5] * 3
    np.testing.assert_allclose([s[0] for s in seen], expected0)
    np.testing.assert_allclose([s[1] for s in seen], [x / 10 for x in expected0])
    assert sched.get_last_lr() == pytest.approx([0.5, 0.05])


def test_lr_never_exceeds_the_stability_bound_on_nmf():
    nmf = StochasticNMF(planted_problem(20, 15, 3, seed=0))
    opt = torch.optim.SGD(nmf.parameters(), lr=0.5 * nmf.stability_bound())
    sched = RLScheduler(opt, _constant_policy(1.0, steps_per_action=2), total_steps=40,
                        lr_bound=nmf.stability_bound)
    hit_bound = 0
    for call in range(40):
        sched.step(nmf.step(opt).loss)
        if call % 2 == 0:  # a decision call: clipped to the bound of the current iterate
            assert opt.param_groups[0]["lr"] <= nmf.stability_bound() * (1 + 1e-12)
            hit_bound += opt.param_groups[0]["lr"] == pytest.approx(nmf.stability_bound())
    assert hit_bound > 10  # the always-increase policy really pushes against the bound
    assert nmf.loss() < 0.2 * 0.5 * float((nmf.X**2).sum())


def test_state_dict_is_json_and_resuming_gives_the_same_lrs():
    torch.manual_seed(1)
    policy = PolicyNetwork(PolicyConfig(steps_per_action=2))
    losses = [10.0 / (1 + i) + 0.1 * math.sin(i) for i in range(30)]

    def make():
        p = torch.nn.Parameter(torch.zeros(1))
        p.grad = torch.ones(1)
        opt = torch.optim.SGD([p], lr=0.05)
        return opt, RLScheduler(opt, policy, total_steps=30)

    opt_a, a = make()
    for loss in losses[:13]:
        a.step(loss)
    state = json.loads(json.dumps(a.state_dict()))
    opt_b, b = make()
    b.load_state_dict(state)
    opt_b.param_groups[0]["lr"] = opt_a.param_groups[0]["lr"]  # the optimizer restores its own
    for loss in losses[13:]:
        a.step(loss)
        b.step(loss)
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="version"):
        b.load_state_dict({**state, "version": 99})


def test_a_state_of_another_policy_kind_is_refused_before_anything_changes():
    residual = PolicyNetwork(PolicyConfig(kind="greedy_residual", feature_names=list(
        FEATURE_SETS["greedy_residual"]), steps_per_action=2))
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    opt = torch.optim.SGD([p], lr=0.05)
    direct = RLScheduler(opt, PolicyNetwork(PolicyConfig(steps_per_action=2)), total_steps=30)
    for i in range(5):
        direct.step(1.0 / (1 + i))
    before = json.dumps(direct.state_dict())
    q = torch.nn.Parameter(torch.zeros(1))
    other = RLScheduler(torch.optim.SGD([q], lr=0.05), residual, total_steps=30)
    other.step(1.0)
    with pytest.raises(ValueError, match="residual policy; this scheduler runs a direct one"):
        direct.load_state_dict(other.state_dict())
    assert json.dumps(direct.state_dict()) == before


def test_works_in_a_plain_torch_loop_without_a_bound():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = RLScheduler.pretrained("nmf", opt, total_steps=200)
    first = None
    for _ in range(200):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        lr = opt.param_groups[0]["lr"]
        assert 1e-2 * 0.01 * 0.999 <= lr <= 10 * 0.01 * 1.001
    assert loss.item() < first


def test_pretrained_nmf_policy_ships_and_beats_a_tiny_constant_lr():
    assert pretrained_path("nmf").with_suffix(".safetensors").is_file()
    policy = load_policy(pretrained_path("nmf"))
    assert policy.config.training.get("command", "").startswith("learnlr rl train")
    problem = planted_problem(30, 20, 3, noise=0.05, seed=11)
    learned = solve(problem, lr_fraction=0.1, steps=300, seed=11,
                    scheduler_factory=lambda o, nmf: RLScheduler.pretrained(
                        "nmf", o, total_steps=300, lr_bound=nmf.stability_bound))
    constant = solve(problem, lr_fraction=0.1, steps=300, seed=11)
    assert not learned.diverged
    # The policy must have moved the LR (a no-op policy would equal the constant run).
    assert max(learned.lrs) > 1.5 * learned.lrs[0] or min(learned.lrs) < 0.67 * learned.lrs[0]
    assert learned.losses[-1] < constant.losses[-1]
    with pytest.raises(ValueError, match="nmf"):
        pretrained_path("imagenet")


def test_the_shipped_direct_policy_holds_the_lr_past_total_steps():
    # The policy was trained on budget fractions up to 1: past the budget it must not act
    # (without the hold it would act at calls 60, 70, 80, 90 with the fraction stuck at 1).
    nmf = StochasticNMF(planted_problem(20, 15, 3, seed=0))
    opt = torch.optim.SGD(nmf.parameters(), lr=0.1 * nmf.stability_bound())
    sched = RLScheduler.pretrained("nmf", opt, total_steps=60, lr_bound=nmf.stability_bound)
    lrs = []
    for _ in range(100):
        sched.step(nmf.step(opt).loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert len(set(lrs[:60])) > 1  # the policy did act within the budget
    assert lrs[59:] == [lrs[59]] * 41  # from call 60 on (0-based) the LR is constant


def test_total_steps_takes_any_integer_type_but_not_a_bool():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = RLScheduler(opt, _constant_policy(0.0), total_steps=np.int64(10))
    assert sched.total_steps == 10 and type(sched.total_steps) is int
    json.dumps(sched.state_dict())  # a numpy integer would not serialise
    for bad in (True, 2.5, np.int64(0)):
        with pytest.raises(ValueError, match="total_steps"):
            RLScheduler(opt, _constant_policy(0.0), total_steps=bad)


@pytest.mark.parametrize(("field", "value"), [
    ("min_relative_lr", 50.0), ("min_relative_lr", 1.0), ("min_relative_lr", "0.1"),
    ("steps_per_action", 2.5), ("steps_per_action", True), ("feature_window", 1),
    ("feature_window", 3.0), ("hidden_sizes", ["32", 32]), ("hidden_sizes", [True, 32]),
    ("hidden_sizes", []), ("kind", ["direct"]), ("activation", ["tanh"]),
    ("max_log_change", "big"), ("lower_only", "yes"), ("training", [1]),
])
def test_load_policy_refuses_an_invalid_field_naming_the_file_and_the_field(
        tmp_path, field, value):
    _, config = save_policy(PolicyNetwork(PolicyConfig()), tmp_path / "p")
    raw = json.loads(config.read_text())
    config.write_text(json.dumps({**raw, field: value}))
    with pytest.raises(ValueError) as info:
        load_policy(tmp_path / "p")
    assert str(config) in str(info.value) and field in str(info.value)


def test_a_policy_stem_with_a_dot_keeps_its_whole_name(tmp_path):
    # `OUT.partial` next to `OUT`: the suffixes are appended, so neither overwrites the other.
    first = PolicyNetwork(PolicyConfig(hidden_sizes=[4]))
    second = PolicyNetwork(PolicyConfig(hidden_sizes=[6]))
    save_policy(first, tmp_path / "out")
    weights, meta = save_policy(second, tmp_path / "out.partial")
    assert (weights.name, meta.name) == ("out.partial.safetensors", "out.partial.json")
    assert load_policy(tmp_path / "out").config.hidden_sizes == [4]
    assert load_policy(tmp_path / "out.partial").config.hidden_sizes == [6]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.json", "out.partial.json", "out.partial.safetensors", "out.safetensors"]


def test_a_residual_state_is_strict_json_before_the_first_step_and_resumes_exactly():
    policy = load_policy(pretrained_path("deep"))

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        return model, opt, RLScheduler(opt, policy, total_steps=40)

    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(dim=1, keepdim=True)

    def run(model, opt, sched, steps):
        for step in steps:
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss)
            if step % 5 == 4:
                sched.decide(loss.item() * 1.1)
        return opt.param_groups[0]["lr"]

    model_a, opt_a, a = make()
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))  # no NaN before a loss
    model_b, opt_b, b = make()
    b.load_state_dict(state)
    assert math.isnan(b.residual.loss)
    assert run(model_a, opt_a, a, range(40)) == run(model_b, opt_b, b, range(40))
