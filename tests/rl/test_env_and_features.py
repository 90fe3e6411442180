"""LRControlEnv: gymnasium contract, determinism, the bound clip, divergence handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from learnlr.nmf import GradientOracle, planted_problem
from learnlr.rl import FEATURE_NAMES, LRControlEnv, NMFInstance, ObservationBuilder


def _rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(np.array([a], dtype=np.float32))
        out.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.array(out), np.array(rewards)


def test_env_passes_gymnasium_check_env():
    check_env(LRControlEnv("nmf", seed=0, budget_steps=40, steps_per_action=5),
              skip_render_check=True)


def test_same_seed_same_episode_different_seed_different_instance():
    actions = [0.5, -0.2, 1.0, -1.0, 0.0, 0.3]
    env = LRControlEnv("nmf", budget_steps=60, steps_per_action=10)
    obs_a, rew_a = _rollout(env, actions, seed=3)
    obs_b, rew_b = _rollout(env, actions, seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    name_3 = env.instance.problem.name
    _rollout(env, actions, seed=4)
    assert env.instance.problem.name != name_3


def test_observation_layout_and_truncation_by_budget():
    env = LRControlEnv("nmf", seed=1, budget_steps=50, steps_per_action=10)
    obs, _ = env.reset()
    assert obs.shape == (len(FEATURE_NAMES),) and obs.dtype == np.float32
    assert obs[FEATURE_NAMES.index("budget_fraction")] == 0.0
    steps = 0
    while True:
        obs, reward, term, trunc, info = env.step(np.array([0.0], dtype=np.float32))
        steps += 1
        if term or trunc:
            break
    assert trunc and not term and steps == 5 and info["steps"] == 50
    assert obs[FEATURE_NAMES.index("budget_fraction")] == pytest.approx(1.0)


def test_reward_is_the_decrease_in_log_loss():
    env = LRControlEnv("nmf", seed=2, budget_steps=40, steps_per_action=10)
    env.reset()
    before = env.loss
    _, reward, *_ = env.step(np.array([1.0], dtype=np.float32))
    assert reward == pytest.approx(math.log(before) - math.log(env.loss))
    assert reward > 0  # a fresh NMF run at a growing LR goes down


def test_area_reward_sums_to_the_mean_log_improvement_of_the_run():
    env = LRControlEnv("nmf", seed=2, budget_steps=40, steps_per_action=10, reward="area")
    env.reset()
    initial = env.loss
    total, trunc = 0.0, False
    while not trunc:
        _, reward, _, trunc, _ = env.step(np.array([0.5], dtype=np.float32))
        total += reward
    assert len(env.history) == 40
    expected = sum(math.log(initial / loss) for loss in env.history) / 40
    assert total == pytest.approx(expected, rel=1e-12)
    assert total > 0


def test_make_env_builds_the_workload_env_for_a_benchmark_workload_name():
    from learnlr.rl import make_env
    from learnlr.rl.workload_env import WorkloadLRControlEnv

    env = make_env("digits-cnn", seed=0, optimizers="sgd", suite="tiny", budget_steps=20)
    assert type(env) is WorkloadLRControlEnv
    assert env.workloads == ("digits-cnn",) and env.optimizers == ("sgd",)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (len(FEATURE_NAMES),)
    assert type(make_env("nmf", seed=0, budget_steps=40)) is LRControlEnv
    assert type(LRControlEnv("nmf", seed=0, budget_steps=40)) is LRControlEnv
    # The class itself never returns another class: it points to the factory instead.
    with pytest.raises(ValueError, match=r"workload must be one of \['nmf'\].*make_env"):
        LRControlEnv("digits-cnn", seed=0)


def test_lr_is_clipped_to_the_stability_bound():
    env = LRControlEnv("nmf", seed=5, budget_steps=100, steps_per_action=5,
                       max_log_change=math.log(10.0))
    env.reset()
    for _ in range(20):  # always ask for 10x more
        env.step(np.array([1.0], dtype=np.float32))
    assert len(env.lr_history) == 100
    assert env.lr <= env.bound * (1 + 1e-12)
    rel = env.features.observe(env.loss, 1.0, env.lr, env.bound, 1.0)
    assert rel[FEATURE_NAMES.index("log_relative_lr")] <= 1e-6


def _instance(oracle):
    return NMFInstance(planted_problem(30, 20, 3, seed=0), oracle, seed=0)


def test_without_the_bound_a_greedy_policy_diverges_and_is_penalised():
    env = LRControlEnv("nmf", budget_steps=400, steps_per_action=5,
                       max_log_change=math.log(10.0), clip_to_bound=False,
                       divergence_penalty=7.0,
                       instance=_instance(GradientOracle("additive", sigma=0.1)))
    env.reset(seed=0)
    for _ in range(80):
        obs, reward, term, trunc, info = env.step(np.array([1.0], dtype=np.float32))
        if term or trunc:
            break
    assert term and info["diverged"] and reward == -7.0
    assert np.all(np.isfinite(obs))


def test_with_the_bound_the_same_greedy_policy_does_not_diverge():
    env = LRControlEnv("nmf", budget_steps=400, steps_per_action=5,
                       max_log_change=math.log(10.0),
                       instance=_instance(GradientOracle("additive", sigma=0.1)))
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        _, reward, term, trunc, info = env.step(np.array([1.0], dtype=np.float32))
        total += reward
        done = term or trunc
    assert trunc and not info["diverged"] and total > 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workload": "cifar"}, "workload"),
        ({"steps_per_action": 0}, "steps_per_action"),
        ({"budget_steps": 3, "steps_per_action": 5}, "budget_steps"),
        ({"max_log_change": 0.0}, "max_log_change"),
        ({"initial_lr_range": (0.5, 0.1)}, "initial_lr_range"),
        ({"reward": "accuracy"}, "reward"),
        ({"divergence_penalty": -1.0}, "divergence_penalty"),
        ({"divergence_penalty": float("nan")}, "divergence_penalty"),
        ({"feature_window": 1}, "feature_window"),
        ({"feature_window": 2.5}, "feature_window"),
        ({"budget_steps": 40.0}, "budget_steps"),
    ],
)
def test_invalid_env_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRControlEnv(**kwargs)


@pytest.mark.parametrize("make", ["workload", "nmf_residual", "greedy_residual"])
def test_every_env_checks_divergence_penalty_and_feature_window_when_built(make):
    # One check shared by the environments: refused at construction, never at reset().
    from learnlr.rl.nmf_residual import NMFResidualEnv
    from learnlr.rl.residual_env import ResidualWorkloadEnv
    from learnlr.rl.workload_env import WorkloadLRControlEnv

    episode = {"workload": "digits-cnn", "optimizer": "sgd", "seed": 0, "base_lr": 0.1,
               "lr_scale": 1.0, "budget_steps": 20, "eval_every": 10, "base_val_loss": 1.0}
    build = {"workload": lambda **kw: WorkloadLRControlEnv("digits-cnn", "sgd", **kw),
             "nmf_residual": lambda **kw: NMFResidualEnv([], "cosine", **kw),
             "greedy_residual": lambda **kw: ResidualWorkloadEnv([episode], **kw)}[make]
    with pytest.raises(ValueError, match="divergence_penalty"):
        build(divergence_penalty=-2.0)
    with pytest.raises(ValueError, match="feature_window"):
        build(feature_window=1)


def test_a_budget_that_is_not_a_multiple_of_k_cuts_the_last_window_short():
    env = LRControlEnv("nmf", seed=0, budget_steps=15, steps_per_action=10)
    env.reset()
    _, _, term, trunc, info = env.step(np.array([0.0], dtype=np.float32))
    assert not (term or trunc) and info["steps"] == 10
    _, _, term, trunc, info = env.step(np.array([0.0], dtype=np.float32))
    assert trunc and not term and info["steps"] == 15 == len(env.history)


def test_observation_builder_state_round_trip_and_clipping():
    a = ObservationBuilder(window=4)
    a.reset(10.0, 2.0)
    for loss in (9.0, 8.0, 7.5):
        a.record(loss)
    first = a.observe(7.0, 1.0, 0.5, 1.0, 0.3)
    b = ObservationBuilder(window=4)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.observe(6.0, 1.0, 0.5, 1.0, 0.4),
                                  b.observe(6.0, 1.0, 0.5, 1.0, 0.4))
    assert first[FEATURE_NAMES.index("log_loss_ratio")] == pytest.approx(math.log(0.7) / 10,
                                                                        rel=1e-5)
    # A non-finite loss never produces a non-finite observation.
    bad = a.observe(float("nan"), float("inf"), 1e-30, 1.0, 2.0)
    assert np.all(np.isfinite(bad)) and np.all(np.abs(bad) <= 5.0)
    with pytest.raises(ValueError, match="window"):
        ObservationBuilder(window=1)
