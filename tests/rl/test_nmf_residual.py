"""Residual policy over an NMF base schedule (learnlr.rl.nmf_residual)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnlr.nmf.solver import solve
from learnlr.rl.features import FEATURE_SETS
from learnlr.rl.nmf_residual import (
    KIND,
    InstanceMeasure,
    NMFResidualEnv,
    ResidualScheduler,
    base_schedule,
    choose_base,
    residual_schedule,
    training_instances,
)
from learnlr.rl.policy import PolicyConfig, PolicyNetwork, load_policy, save_policy

BUDGET = 60
BASE = f"step(lr0=1.0,gamma=0.1,every={BUDGET // 4})"


@pytest.fixture(scope="module")
def instance():
    return training_instances(1, start=5)[0]


def _solve(instance, spec, budget=BUDGET, safety=0.95):
    return solve(instance.problem, oracle=instance.oracle, steps=budget, seed=instance.seed,
                 lr_fraction=spec.lr_fraction, scheduler_factory=spec.factory, safety=safety)


def _measure(instance, target, base_steps, base_final=1.0):
    return InstanceMeasure(target=target, steps={BASE: base_steps}, finals={BASE: base_final})


def _rollout(env, action, index=0):
    obs, _ = env.reset(seed=0, options={"index": index})
    rewards, done = [], False
    while not done:
        obs, reward, term, trunc, info = env.step(np.array([action], dtype=np.float32))
        rewards.append(reward)
        done = term or trunc
    return rewards, info


@pytest.mark.parametrize("base", [BASE, "greedy", "cosine"])
def test_zero_action_scheduler_reproduces_the_base_bit_for_bit(instance, base):
    spec = base_schedule(base, BUDGET) if base != "cosine" else None
    if spec is None:
        from learnlr.nmf.schedules import nmf_schedule
        spec = nmf_schedule("cosine", BUDGET)
    plain = _solve(instance, spec)
    residual = _solve(instance, residual_schedule(spec, BUDGET, action=0.0))
    assert residual.losses == plain.losses
    assert residual.lrs == plain.lrs


def test_nonzero_action_changes_the_run_and_zero_after_restores_the_base_lr(instance):
    spec = base_schedule(BASE, BUDGET)
    lower = _solve(instance, residual_schedule(spec, BUDGET, action=-1.0, max_correction=4.0))
    plain = _solve(instance, spec)
    assert lower.losses != plain.losses
    bound0 = plain.bounds[0]  # the base starts at 1.0 x the bound (the solver caps it at 0.95x)
    assert lower.lrs[0] == pytest.approx(bound0 / 4.0)
    # The base (StepLR) stays on its own LR: after its drop the corrected LR is still base / 4.
    assert lower.lrs[BUDGET // 4 + 1] == pytest.approx(0.1 * bound0 / 4.0, rel=1e-9)


def test_env_zero_action_reproduces_the_base_run_and_earns_zero(instance):
    plain = _solve(instance, base_schedule(BASE, BUDGET))
    target = plain.losses[BUDGET // 2]
    base_steps = plain.steps_to(target)
    env = NMFResidualEnv([(instance, _measure(instance, target, base_steps))], BASE,
                         budget_steps=BUDGET, steps_per_action=10)
    rewards, info = _rollout(env, 0.0)
    assert env.losses == plain.losses[: len(env.losses)]
    assert env.lrs == plain.lrs[: len(env.lrs)]
    assert info["agent_steps"] == base_steps
    assert sum(rewards) == 0.0 and all(r == 0.0 for r in rewards)


def test_env_slower_run_gets_the_negative_paired_reward(instance):
    plain = _solve(instance, base_schedule(BASE, BUDGET))
    target = plain.losses[BUDGET // 2]
    base_steps = plain.steps_to(target)
    env = NMFResidualEnv([(instance, _measure(instance, target, base_steps))], BASE,
                         budget_steps=BUDGET, steps_per_action=10, max_correction=8.0)
    rewards, info = _rollout(env, -1.0)  # 8x lower LR: slower
    agent = info["agent_steps"]
    assert agent > base_steps
    assert sum(rewards) == pytest.approx((base_steps - agent) / base_steps)
    assert sum(rewards) < 0


def test_final_loss_term_is_paired_with_the_base_when_the_target_is_missed(instance):
    plain = _solve(instance, base_schedule(BASE, BUDGET))
    pool = [(instance, _measure(instance, 0.0, BUDGET + 1, base_final=plain.losses[-1]))]
    env = NMFResidualEnv(pool, BASE, budget_steps=BUDGET, steps_per_action=10,
                         max_correction=8.0, final_weight=1.0)
    rewards, info = _rollout(env, 0.0)
    assert info["agent_steps"] == BUDGET + 1 and rewards == [0.0] * len(rewards)
    rewards, _ = _rollout(env, -1.0)  # 8x lower LR: higher final loss
    assert rewards[-1] == pytest.approx(math.log(plain.losses[-1] / env.losses[-1]))
    assert rewards[-1] < 0 and sum(rewards[:-1]) == 0.0


def test_corrected_lr_stays_under_the_stability_bound(instance):
    spec = base_schedule(BASE, BUDGET)
    run = _solve(instance, residual_schedule(spec, BUDGET, action=1.0, max_correction=4.0))
    assert all(lr <= 0.95 * b * (1 + 1e-12) for lr, b in zip(run.lrs, run.bounds, strict=True))
    assert not run.diverged
    plain = _solve(instance, spec)
    assert run.lrs[0] == pytest.approx(0.95 * plain.bounds[0])  # 4x the base, then capped


def test_divergence_ends_the_episode_with_the_penalty(instance):
    env = NMFResidualEnv([(instance, _measure(instance, 0.0, BUDGET + 1))], BASE,
                         budget_steps=BUDGET, steps_per_action=10, max_correction=50.0,
                         divergence_penalty=7.0, safety=None)
    rewards, info = _rollout(env, 1.0)  # 50x the bound, no cap: blows up
    assert info["diverged"]
    assert rewards[-1] == -7.0
    assert len(env.losses) < BUDGET


def test_policy_file_round_trips_without_sb3_or_pickle(tmp_path, instance):
    torch.manual_seed(0)
    config = PolicyConfig(hidden_sizes=[8], feature_names=list(FEATURE_SETS[KIND]), kind=KIND,
                          max_log_change=math.log(4.0),
                          training={"base": BASE, "max_correction": 4.0})
    network = PolicyNetwork(config)
    save_policy(network, tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert loaded.config.kind == KIND
    obs = torch.randn(5, len(FEATURE_SETS[KIND]))
    assert torch.equal(loaded(obs), network(obs))
    spec = base_schedule(BASE, BUDGET)
    a = _solve(instance, residual_schedule(spec, BUDGET, policy=network))
    b = _solve(instance, residual_schedule(spec, BUDGET, policy=loaded))
    assert a.losses == b.losses


def test_policy_run_in_solve_matches_the_env_with_the_same_actions(instance):
    """The scheduler (solve) and the environment see the same observations and LRs."""
    torch.manual_seed(1)
    config = PolicyConfig(hidden_sizes=[8], feature_names=list(FEATURE_SETS[KIND]), kind=KIND)
    network = PolicyNetwork(config)
    with torch.no_grad():
        network.head.bias.fill_(0.3)
    spec = base_schedule(BASE, BUDGET)
    run = _solve(instance, residual_schedule(spec, BUDGET, policy=network, max_correction=4.0))
    env = NMFResidualEnv([(instance, _measure(instance, 0.0, BUDGET + 1))], BASE,
                         budget_steps=BUDGET, steps_per_action=10, max_correction=4.0)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, _ = env.step(np.array([network.act(obs)]))
        done = term or trunc
    assert env.lrs == run.lrs
    assert env.losses == run.losses


def test_choose_base_takes_the_lowest_median_and_bad_inputs_raise():
    names = [f"step(lr0={lr},gamma={g},every={e})" for lr in (0.5, 1.0) for g in (0.1, 0.3)
             for e in (100, 200)] + ["greedy"]
    measures = [InstanceMeasure(1.0, {n: 300 for n in names} | {"greedy": 100 + i})
                for i in range(3)]
    best, evidence = choose_base(measures, budget=400)
    assert best == "greedy" and evidence["greedy"]["median"] == 101
    skewed = [InstanceMeasure(1.0, {n: 190 for n in names} | {"greedy": s})
              for s in (100, 100, 401)]  # greedy: lower median (100 < 190), higher mean (200.3)
    assert choose_base(skewed, budget=400)[0] == "greedy"
    assert choose_base(skewed, budget=400, rule="mean")[0] == names[0]
    with pytest.raises(ValueError, match="rule must be one of"):
        choose_base(skewed, rule="best")
    with pytest.raises(ValueError, match="base must be one of"):
        base_schedule("nope", 400)
    assert base_schedule("step(lr0=1.0,gamma=0.3,every=100)", 60).name == (
        "step(lr0=1.0,gamma=0.3,every=100)")
    with pytest.raises(ValueError, match="max_correction"):
        ResidualScheduler(None, None, None, total_steps=10, max_correction=1.0)  # type: ignore


def test_shipped_residual_policy_loads_and_records_its_base_and_command():
    from learnlr.rl.nmf_residual import pretrained_residual_path, pretrained_residual_schedule

    policy = load_policy(pretrained_residual_path())
    assert policy.config.kind == KIND
    training = policy.config.training
    assert "rl_nmf_residual.py" in training["command"]
    assert "3_000_000" in training["train_seed_stream"]
    spec = pretrained_residual_schedule(budget=BUDGET)
    assert training["base"] in training["base_choice"]
    instance = training_instances(1, start=7)[0]
    run = _solve(instance, spec)
    assert not run.diverged and run.losses[-1] < run.losses[0]


def test_ppo_trains_and_exports_a_residual_policy(instance, tmp_path):
    from learnlr.rl.nmf_residual import (
        NMFResidualTrainConfig,
        make_residual_ppo,
        train_residual_policy,
    )

    plain = _solve(instance, base_schedule(BASE, BUDGET))
    target = plain.losses[BUDGET // 2]
    pool = [(instance, _measure(instance, target, plain.steps_to(target), plain.losses[-1]))]
    config = NMFResidualTrainConfig(timesteps=64, n_envs=1, n_steps=32, batch_size=32, n_epochs=1,
                                 budget_steps=BUDGET, hidden_sizes=[8])
    untrained = make_residual_ppo(config, pool, BASE)  # starts at the base: mean action 0
    obs = np.zeros((1, len(FEATURE_SETS[KIND])), dtype=np.float32)
    assert float(untrained.predict(obs, deterministic=True)[0][0, 0]) == 0.0
    network = train_residual_policy(config, pool, BASE, partial=tmp_path / "p.partial")
    assert network.config.kind == KIND
    partial = load_policy(tmp_path / "p.partial")  # saved after the first of two updates
    assert partial.config.kind == KIND and partial.config.training["timesteps_done"] == 32
    assert network.config.feature_names == list(FEATURE_SETS[KIND])
    assert network.config.training["base"] == BASE


def test_shipped_residual_is_an_nmf_schedule_by_name():
    import learnlr.plugins  # noqa: F401  (registers the RL schedules)
    from learnlr.nmf.schedules import NMF_SCHEDULES, nmf_schedule

    assert "rl_residual" in NMF_SCHEDULES
    spec = nmf_schedule("rl_residual", 100)
    assert spec.name == "rl_residual" and spec.factory is not None
