"""PPO pipeline (a few hundred steps, just the plumbing), SB3 export, behaviour cloning, eval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnlr.rl import PolicyConfig, RLScheduler, load_policy, save_policy
from learnlr.rl.cloning import LRTrajectory, behaviour_clone, clone_dataset
from learnlr.rl.evaluation import (
    compare_on_instance,
    drop_schedules,
    held_out_instances,
    oracle_steps,
    run_schedule,
    summarize_instances,
)
from learnlr.rl.policy import export_sb3_policy
from learnlr.rl.training import TrainConfig, load_actor_into_sb3, make_ppo, train_policy

TINY = {"timesteps": 256, "n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2,
        "budget_steps": 60, "steps_per_action": 10}


def test_exported_actor_matches_sb3_deterministic_predict():
    model = make_ppo(TrainConfig(**TINY))
    config = TrainConfig(**TINY).policy_config()
    net = export_sb3_policy(model, config)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-2, 2, (32, len(config.feature_names))).astype(np.float32)
    sb3_actions, _ = model.predict(obs, deterministic=True)
    ours = torch.clamp(net(torch.from_numpy(obs)), -1, 1).detach().numpy()
    np.testing.assert_allclose(ours, sb3_actions, atol=1e-6)


def test_ppo_pipeline_trains_saves_and_drives_a_scheduler(tmp_path):
    config = TrainConfig(**TINY, seed=5)
    net = train_policy(config, command="test")
    assert net.config.training["config"]["seed"] == 5
    save_policy(net, tmp_path / "tiny")
    loaded = load_policy(tmp_path / "tiny")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = RLScheduler(opt, loaded, total_steps=20)
    for i in range(20):
        sched.step(1.0 / (i + 1))
    assert math.isfinite(opt.param_groups[0]["lr"]) and opt.param_groups[0]["lr"] > 0


def test_ppo_training_is_reproducible_with_a_seed_and_saving_partials_changes_nothing(tmp_path):
    config = TrainConfig(**TINY, seed=2)
    a, b = train_policy(config), train_policy(config, partial=tmp_path / "p.partial")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb)
    # Two rollouts of 2 x 64 steps: the actor after the first update was saved on the way.
    partial = load_policy(tmp_path / "p.partial")
    assert partial.config.training["partial"] is True
    assert partial.config.training["timesteps_done"] == 128
    assert partial.config.training["config"] == b.config.training["config"]


def test_a_warm_start_of_another_kind_or_size_is_refused_naming_the_cause():
    # Checked before PPO is built (which used to fail later, on the layer shapes).
    from learnlr.rl import PolicyNetwork, pretrained_path

    config = TrainConfig(**TINY)
    with pytest.raises(ValueError, match="'direct' policy.*greedy_residual"):
        train_policy(config, warm_start=load_policy(pretrained_path("deep")))
    with pytest.raises(ValueError, match=r"hidden_sizes \[8\] do not match.*\[32, 32\]"):
        train_policy(config, warm_start=PolicyNetwork(PolicyConfig(hidden_sizes=[8])))


def test_clone_dataset_recovers_the_actions_of_a_known_schedule():
    K = 5
    config = PolicyConfig(steps_per_action=K, max_log_change=math.log(2.0))
    # LR constant for 10 steps, then halved every K steps; loss decreasing.
    lrs = [1.0] * 10 + [0.5] * K + [0.25] * K + [0.125] * K
    losses = [10.0 / (1 + t) for t in range(len(lrs))]
    obs, actions = clone_dataset([LRTrajectory(losses=losses, lrs=lrs)], config)
    assert obs.shape == (len(lrs) // K, len(config.feature_names))
    np.testing.assert_allclose(actions.ravel(), [0, 0, -1, -1, -1])


def test_behaviour_cloning_fits_the_demonstrated_actions():
    config = PolicyConfig(steps_per_action=4, max_log_change=math.log(2.0))
    rng = np.random.default_rng(0)
    trajectories = []
    for _ in range(5):
        # Demonstrations: increase (x2) in the first half of the budget, decrease after.
        lrs = [0.01 * 2.0 ** min(t // 4, 5) * 0.5 ** max(t // 4 - 10, 0) for t in range(80)]
        losses = list(np.exp(-np.arange(80) / 20) + 0.01 * rng.uniform(size=80))
        trajectories.append(LRTrajectory(losses=losses, lrs=lrs))
    obs, actions = clone_dataset(trajectories, config)
    net = behaviour_clone(trajectories, config, epochs=400, seed=0)
    pred = net(torch.from_numpy(obs)).detach().numpy()
    baseline = float(np.mean((actions - actions.mean()) ** 2))
    assert float(np.mean((pred - actions) ** 2)) < 0.2 * baseline


def test_bc_weights_load_into_the_ppo_actor():
    config = TrainConfig(**TINY)
    model = make_ppo(config)
    net = behaviour_clone([LRTrajectory(losses=[3.0, 2.0, 1.5] * 10, lrs=[0.1] * 30)],
                          config.policy_config(), epochs=5)
    load_actor_into_sb3(model, net)
    obs = np.zeros((1, len(net.config.feature_names)), dtype=np.float32)
    sb3_action, _ = model.predict(obs, deterministic=True)
    assert float(sb3_action[0, 0]) == pytest.approx(net.act(obs[0]), abs=1e-6)


def test_trajectory_validation():
    with pytest.raises(ValueError, match="LRs"):
        LRTrajectory(losses=[1.0], lrs=[0.1])
    with pytest.raises(ValueError, match="bounds"):
        LRTrajectory(losses=[1.0, 0.5], lrs=[0.1, 0.1], bounds=[1.0])


def test_compare_on_instance_measures_steps_to_target():
    inst = held_out_instances(1)[0]
    result = compare_on_instance(inst, None, budget=80)
    assert set(result.steps) == {"constant", "step", "cosine", "greedy"}
    # The target is defined from the best hand-made final loss, so someone reaches it.
    assert min(result.steps.values()) <= 80
    for family, run in result.runs.items():
        reached = result.steps[family]
        if reached <= 80:
            assert run.losses[reached] <= result.target
            assert all(v > result.target for v in run.losses[:reached])
    summary = summarize_instances([result])
    assert summary["instances"] == 1 and summary["divergences"]["step"] == 0


def test_oracle_is_the_fewest_steps_over_drop_schedules_and_the_step_grid():
    inst = held_out_instances(2)[1]
    result = compare_on_instance(inst, None, budget=60)
    best, name = oracle_steps(inst, result, budget=60)
    assert best <= result.steps["step"]
    drops = {}
    for spec in drop_schedules():
        run = run_schedule(inst, spec, 60)
        reached = run.steps_to(result.target)
        drops[spec.name] = 61 if reached is None or run.diverged else reached
    assert len(drops) == 60
    assert best == min(min(drops.values()), min(result.step_configs.values()))
    assert name in drops or name in result.step_configs


def test_training_config_rejects_an_unknown_reward():
    with pytest.raises(ValueError, match="reward"):
        TrainConfig(reward="accuracy")


@pytest.mark.parametrize("trainer", ["direct", "nmf_residual", "greedy_residual"])
@pytest.mark.parametrize(("field", "value"), [
    ("n_steps", 0), ("batch_size", True), ("timesteps", 2.5), ("gamma", 0.0),
    ("learning_rate", -1e-3), ("seed", -1), ("seed", 2**32), ("seed", True), ("seed", 1.5),
])
def test_every_trainer_validates_ppo_settings_the_same_way(trainer, field, value):
    # One definition (PPOSettings) behind the three trainers' configs.
    from learnlr.rl.nmf_residual import NMFResidualTrainConfig
    from learnlr.rl.residual_training import ResidualTrainConfig
    from learnlr.rl.training import PPOSettings

    build = {"direct": TrainConfig, "nmf_residual": NMFResidualTrainConfig,
             "greedy_residual": lambda **kw: ResidualTrainConfig(workloads=["digits-cnn"], **kw)}
    assert isinstance(build[trainer](), PPOSettings)
    with pytest.raises(ValueError, match=field):
        build[trainer](**{field: value})


def test_best_store_trajectories_reads_the_benchmark_store(tmp_path):
    from learnlr.bench.runner import CellConfig, CellResult
    from learnlr.bench.store import ExperimentStore
    from learnlr.rl.cloning import best_store_trajectories

    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        for schedule, final, factor in (("cosine", 0.5, 0.5), ("constant", 0.9, 1.0)):
            config = CellConfig(workload="w", optimizer="sgd", schedule=schedule, seed=0,
                                base_lr=0.1, budget_steps=20, eval_every=10)
            lrs = [0.1 * factor ** (t // 10) for t in range(20)]
            store.write_cell(
                CellResult(config=config,
                           summary={"status": "ok", "final_val_loss": final,
                                    "best_val_loss": final},
                           trajectory_lr=lrs, trajectory_train_loss=[1.0 / (1 + t)
                                                                     for t in range(20)]),
                suite="tiny", purpose="main")
    best = best_store_trajectories(tmp_path / "runs.sqlite", workload="w", best=1)
    assert len(best) == 1 and best[0].lrs[10] == pytest.approx(0.05)  # the cosine-named run
    obs, actions = clone_dataset(best, PolicyConfig(steps_per_action=10,
                                                    max_log_change=math.log(2.0)))
    np.testing.assert_allclose(actions.ravel(), [0.0, -1.0])
