"""``WorkloadLRControlEnv`` (deep-network episodes), its training path and the ``deep`` policy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from learnlr.bench.runner import CellConfig, get_workload_instance, run_cell
from learnlr.bench.schedules import SCHEDULES, build_schedule, make_optimizer
from learnlr.cli import main
from learnlr.rl import load_policy
from learnlr.rl.policy import PolicyConfig, PolicyNetwork
from learnlr.rl.scheduler import PRETRAINED, RLScheduler, pretrained_path
from learnlr.rl.training import TrainConfig
from learnlr.rl.workload_env import WorkloadLRControlEnv, default_base_lr

W = "digits-cnn"  # the cheapest workload with a real network (~3 ms per step on one core)


def _run_episode(env: WorkloadLRControlEnv, actions, seed: int | None = None):
    obs, info = env.reset(seed=seed)
    observations, rewards = [obs], []
    done = False
    i = 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.array([actions(i, obs)]))
        observations.append(obs)
        rewards.append(reward)
        done = terminated or truncated
        i += 1
    return observations, rewards, info


def test_passes_gymnasium_check_env():
    check_env(WorkloadLRControlEnv(W, "sgd", seed=0, budget_steps=25), skip_render_check=True)


def test_same_seed_same_episode_and_budget_decides_the_length():
    def actions(i, obs):
        return math.sin(1.3 * i)

    runs = []
    for _ in range(2):
        env = WorkloadLRControlEnv(W, ("sgd", "adamw"), seed=5, budget_steps=36,
                                   steps_per_action=10)
        obs, rewards, info = _run_episode(env, actions)
        runs.append((obs, rewards, info, list(env.lr_history), list(env.loss_history)))
    (obs_a, rew_a, info_a, lr_a, loss_a), (obs_b, rew_b, info_b, lr_b, loss_b) = runs
    assert all(np.array_equal(x, y) for x, y in zip(obs_a, obs_b, strict=True))
    assert rew_a == rew_b and lr_a == lr_b and loss_a == loss_b
    assert info_a["optimizer"] == info_b["optimizer"] and info_a["run_seed"] == info_b["run_seed"]
    # Decisions after steps 0, 10, 20, 30; the last window is steps 31..35.
    assert len(rew_a) == 4 and len(lr_a) == 36
    assert info_a["val_loss"] is not None and math.isfinite(info_a["val_loss"])
    assert len(set(lr_a)) > 1  # the actions changed the LR


def test_rewards_telescope_to_the_log_loss_decrease_plus_the_validation_term():
    env = WorkloadLRControlEnv(W, "adamw", seed=1, budget_steps=30, terminal_weight=0.0)
    _, rewards, info = _run_episode(env, lambda i, obs: 0.0)
    losses = env.loss_history
    assert sum(rewards) == pytest.approx(math.log(losses[0]) - math.log(np.mean(losses[21:30])))
    assert info["val_loss"] is None  # terminal_weight 0: no evaluation at all
    env = WorkloadLRControlEnv(W, "adamw", seed=1, budget_steps=30, terminal_weight=2.0)
    _, rewards2, info2 = _run_episode(env, lambda i, obs: 0.0)
    val_term = 2.0 * (math.log(env.val_initial) - math.log(info2["val_loss"]))
    assert sum(rewards2) == pytest.approx(sum(rewards) + val_term)
    assert val_term > 0  # training helped the validation loss


@pytest.mark.parametrize(("action", "factor"), [(1.0, 10.0), (-1.0, 0.01)])
def test_lr_is_clipped_to_the_base_lr_band(action, factor):
    env = WorkloadLRControlEnv(W, "adamw", seed=0, budget_steps=60, steps_per_action=5,
                               base_lr=1e-3)
    _, _, info = _run_episode(env, lambda i, obs: action)
    assert env.lr_history[0] == pytest.approx(1e-3)
    assert info["lr"] == pytest.approx(factor * 1e-3)
    assert all(1e-5 * (1 - 1e-9) <= lr <= 1e-2 * (1 + 1e-9) for lr in env.lr_history)


def test_divergence_ends_the_episode_with_the_penalty():
    env = WorkloadLRControlEnv(W, "sgd", seed=0, budget_steps=200, base_lr=30.0,
                               divergence_penalty=7.0)
    _, rewards, info = _run_episode(env, lambda i, obs: 1.0)
    assert info["diverged"] is True
    assert rewards[-1] == -7.0
    assert len(env.loss_history) < 200
    bad = env.loss_history[-1]
    assert not math.isfinite(bad) or bad > 1e3 * env.loss_history[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workloads": "imagenet"}, r"valid workloads: 'nmf' .*\[.*'digits-cnn'"),
        ({"workloads": "nmf"}, "LRControlEnv"),
        ({"workloads": []}, "non-empty"),
        ({"optimizers": "lion"}, r"valid optimizers: \['adagrad', 'adamw', 'sgd'\]"),
        ({"budget_steps": 10}, "budget_steps"),
        ({"suite": "huge"}, "suite"),
        ({"base_lr": -0.1}, "base LRs"),
        ({"base_lr": "centre"}, "base_lr"),
        ({"base_lr": {(W, "sgd"): float("nan")}}, "base LRs"),
        ({"steps_per_action": 0}, "steps_per_action"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WorkloadLRControlEnv(**{"workloads": W, **kwargs})


def test_base_lr_defaults_to_the_centre_of_the_suite_grid_or_a_mapping():
    assert default_base_lr("sgd") == 0.1 and default_base_lr("adamw") == 3e-3
    env = WorkloadLRControlEnv(W, "sgd", seed=0, budget_steps=20,
                               base_lr={(W, "sgd"): 0.03})
    assert env.reset()[1]["base_lr"] == 0.03
    env = WorkloadLRControlEnv(W, "adamw", seed=0, budget_steps=20, base_lr="grid")
    assert {env.reset(seed=s)[1]["base_lr"] for s in range(8)} <= {1e-3, 3e-3, 1e-2}


def _policy() -> PolicyNetwork:
    # A random but decisive policy: every decision changes the LR noticeably.
    torch.manual_seed(0)
    net = PolicyNetwork(PolicyConfig())
    with torch.no_grad():
        net.head.weight.mul_(20.0)
    return net


def test_env_and_rlscheduler_give_identical_lr_trajectories():
    policy = _policy()
    budget, base_lr = 45, 0.05
    env = WorkloadLRControlEnv(W, "sgd", seed=3, budget_steps=budget, base_lr=base_lr)
    _, _, info = _run_episode(env, lambda i, obs: policy.act(obs))
    seed = info["run_seed"]

    workload = get_workload_instance(W)
    workload.setup(seed)
    model = workload.make_model(seed)
    opt = make_optimizer("sgd", model.parameters(), base_lr)
    sched = RLScheduler(opt, policy, total_steps=budget)
    generator = torch.Generator().manual_seed(seed)
    lrs, losses = [], []
    for step in range(budget):
        opt.zero_grad(set_to_none=True)
        loss = workload.loss(model, workload.batch(step, generator))
        loss.backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        losses.append(float(loss.detach()))
        sched.step(loss)
    assert len(set(lrs)) > 3
    assert lrs == env.lr_history
    assert losses == env.loss_history


def test_env_matches_the_benchmark_runner_with_the_shipped_nmf_policy():
    budget, base_lr = 45, 3e-3
    env = WorkloadLRControlEnv(W, "adamw", seed=0, budget_steps=budget, base_lr=base_lr,
                               data_seeds=1)
    policy = load_policy(pretrained_path("nmf"))
    _, _, info = _run_episode(env, lambda i, obs: policy.act(obs))
    assert info["run_seed"] == 0
    result = run_cell(CellConfig(W, "adamw", "rl", seed=0, base_lr=base_lr,
                                 budget_steps=budget, eval_every=20))
    assert result.trajectory_lr == env.lr_history
    assert len(set(env.lr_history)) > 1


def test_train_config_builds_the_workload_env_and_rejects_mixtures():
    config = TrainConfig(workloads=[W], optimizers=["sgd"], episode_steps=20,
                         base_lrs={f"{W}/sgd": 0.03})
    kwargs = config.make_env_kwargs()
    assert kwargs["base_lr"] == {(W, "sgd"): 0.03} and kwargs["budget_steps"] == 20
    assert config.policy_config().workload == W
    with pytest.raises(ValueError, match="not mixed"):
        TrainConfig(workloads=["nmf", W])
    with pytest.raises(ValueError, match="valid workloads"):
        TrainConfig(workloads=["nope"])
    with pytest.raises(ValueError, match="workload/optimizer"):
        TrainConfig(workloads=[W], base_lrs={"digits-cnn": 0.1})


def test_rl_train_cli_on_a_benchmark_workload_end_to_end(tmp_path, capsys):
    out = tmp_path / "deep"
    code = main(["rl", "train", "--timesteps", "32", "--n-envs", "1", "--n-steps", "32",
                 "--seed", "1", "--workloads", W, "--optimizers", "sgd,adamw",
                 "--episode-steps", "20", "--init", "nmf", "--out", str(out), "--no-progress"])
    assert code == 0
    assert out.with_suffix(".safetensors").is_file()
    policy = load_policy(out)
    training = policy.config.training
    assert policy.config.workload == W
    assert training["warm_start"] is True
    assert training["config"]["workloads"] == [W] and training["config"]["episode_steps"] == 20
    assert "--workloads digits-cnn --optimizers sgd,adamw --episode-steps 20 --init nmf" in (
        training["command"])
    assert "wrote" in capsys.readouterr().out


def test_rl_train_cli_unknown_workload_is_a_usage_error(tmp_path, capsys):
    code = main(["rl", "train", "--timesteps", "32", "--workloads", "digits-cnm",
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert "valid workloads" in capsys.readouterr().err


def test_shipped_deep_policy_is_a_residual_over_greedylr_and_runs_as_rl_deep():
    assert "deep" in PRETRAINED
    meta = json.loads(pretrained_path("deep").with_suffix(".json").read_text())
    assert meta["kind"] == "greedy_residual"
    training = meta["training"]
    assert "rl_residual_folds.py" in training["retrain_command"]
    assert len(training["train_workloads"]) == 8
    for fold in training["leave_workloads_out"].values():
        assert set(fold["train_workloads"]).isdisjoint(fold["held_out_workloads"])
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = RLScheduler.pretrained("deep", opt, total_steps=50)
    for t in range(50):
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        opt.step()
        sched.step(loss)
        if t % 10 == 9:
            sched.decide(loss.item())
    # GreedyLR's bounds (0.1x-10x) times the correction (at most exp(max_log_change) either way)
    factor = math.exp(meta["max_log_change"])
    assert 0.0 < opt.param_groups[0]["lr"] <= 0.1 * 10 * factor * (1 + 1e-9)
    assert SCHEDULES["rl_deep"].kind == "adaptive"
    _, hooks = build_schedule("rl_deep", [w], "adamw", base_lr=1e-3, budget_steps=10,
                              eval_every=5)
    assert isinstance(hooks.scheduler, RLScheduler)
    assert hooks.step_on == "step_loss_then_eval"


def test_reward_logs_have_a_floor_for_zero_losses():
    from learnlr.rl.workload_env import _log

    assert _log(0.0, 1e-4) == pytest.approx(math.log(1e-4))
    assert _log(2.0, 1e-4) == pytest.approx(math.log(2.0))
    assert math.isfinite(_log(0.0, 0.0))


def _store_with_runs(path, workload: str) -> None:
    from learnlr.bench.runner import CellConfig, CellResult
    from learnlr.bench.store import ExperimentStore

    with ExperimentStore(path) as store:
        for schedule, final, decay in (("cosine", 0.2, 0.9), ("constant", 0.5, 1.0)):
            config = CellConfig(workload, "sgd", schedule, 0, 0.03, 40, 10)
            lrs = [0.03 * decay ** t for t in range(40)]
            store.write_cell(CellResult(config=config,
                                        summary={"status": "ok", "final_val_loss": final,
                                                 "best_val_loss": final},
                                        trajectory_lr=lrs,
                                        trajectory_train_loss=[1.0 / (t + 1) for t in range(40)],
                                        evals=[{"step": 40, "val_loss": final, "metric": 0.9,
                                                "extra": {}}]),
                             suite="quick", purpose="main")


def test_rl_train_cli_behaviour_clones_the_best_store_runs_of_the_workloads(tmp_path):
    store = tmp_path / "runs.sqlite"
    _store_with_runs(store, W)
    common = ["rl", "train", "--timesteps", "32", "--n-envs", "1", "--n-steps", "32",
              "--seed", "1", "--workloads", W, "--optimizers", "sgd", "--episode-steps", "20",
              "--no-progress"]
    assert main(common + ["--bc", "1", "--bc-store", str(store),
                          "--out", str(tmp_path / "bc")]) == 0
    assert main(common + ["--out", str(tmp_path / "scratch")]) == 0
    bc, scratch = load_policy(tmp_path / "bc"), load_policy(tmp_path / "scratch")
    assert bc.config.training["warm_start"] is True
    assert f"--bc 1 --bc-store {store}" in bc.config.training["command"]
    # Same seed and PPO budget: only the cloned warm start can make the actors differ.
    assert not torch.equal(bc.head.weight, scratch.head.weight)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bc", "2"], "needs --bc-store"),
        (["--bc-store", "runs.sqlite"], "needs --bc N"),
        (["--bc", "2", "--bc-store", "missing.sqlite"], "is not a file"),
        (["--init", "no/such/policy"], "no/such/policy"),
    ],
)
def test_rl_train_cli_bc_store_usage_errors(tmp_path, capsys, extra, message):
    code = main(["rl", "train", "--timesteps", "32", "--workloads", W,
                 "--out", str(tmp_path / "x"), "--no-progress"] + extra)
    assert code == 2
    assert message in capsys.readouterr().err


def test_rl_train_cli_bc_and_init_are_exclusive(tmp_path, capsys):
    code = main(["rl", "train", "--timesteps", "32", "--bc", "2", "--init", "nmf",
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert "--bc and --init" in capsys.readouterr().err
