"""Residual control over the budget-aware GreedyLR: bit-exact zero action, env = scheduler,
reward pairing, store reuse, policy files without SB3 or pickle."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from learnlr.bench.records import CellConfig
from learnlr.bench.runner import run_cell
from learnlr.bench.schedules import schedule_fingerprint
from learnlr.rl.policy import PolicyNetwork, load_policy, save_policy
from learnlr.rl.residual import GreedyResidual
from learnlr.rl.residual_env import ResidualEpisode, ResidualWorkloadEnv, paired_reward
from learnlr.rl.residual_training import ResidualTrainConfig, base_episodes
from learnlr.rl.scheduler import RLScheduler
from learnlr.rl.schedules import policy_hooks
from learnlr.torch.greedy import GreedyLR

CELL = dict(workload="digits-cnn", optimizer="sgd", seed=3, base_lr=0.1, budget_steps=40,
            eval_every=10)


BASES = ["greedy_step", "greedy_eval_budget"]


def _policy(scale: float, seed: int = 0, base: str = "greedy_step") -> PolicyNetwork:
    """A residual policy: zero weights (scale 0) or random ones scaled by ``scale``."""
    config = ResidualTrainConfig(workloads=["digits-cnn"], lower_only=False,
                                 max_log_change=math.log(2.0), base=base)
    network = PolicyNetwork(config.policy_config())
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return network.eval()


def _episode(lr_scale: float = 1.0, base_val: float | None = 1.0) -> ResidualEpisode:
    return ResidualEpisode(**CELL, lr_scale=lr_scale, base_val_loss=base_val)


def _base_cell(lr_scale: float = 1.0, base: str = "greedy_step") -> CellConfig:
    return CellConfig(**CELL, schedule=base, fingerprint=schedule_fingerprint(base),
                      lr_scale=lr_scale)


def _play(env: ResidualWorkloadEnv, act) -> tuple[float, dict]:
    obs, info = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.array([act(obs)]))
        total += reward
        done = terminated or truncated
    return total, info


@pytest.mark.parametrize("base_name", BASES)
@pytest.mark.parametrize("lr_scale", [0.1, 1.0, 10.0])
def test_zero_action_env_reproduces_the_base_cell_bit_for_bit(lr_scale, base_name):
    base = run_cell(_base_cell(lr_scale, base_name))
    env = ResidualWorkloadEnv([_episode(lr_scale, base.summary["final_val_loss"])],
                              base=base_name)
    total, info = _play(env, lambda obs: 0.0)
    assert env.lrs == base.trajectory_lr
    assert env.val_losses == [v for _, v in base.summary["val_curve"]]
    assert total == 0.0 and info["multiplier"] == 1.0


@pytest.mark.parametrize("base_name", BASES)
def test_zero_policy_rlscheduler_in_the_runner_reproduces_its_base(base_name):
    base = run_cell(_base_cell(base=base_name))
    zero = _policy(0.0, base=base_name)
    config = CellConfig(**CELL, schedule="rl_residual")
    ours = run_cell(config, hooks=lambda params, c: policy_hooks(zero, params, c.optimizer,
                                                                 c.lr, c.budget_steps))
    assert ours.trajectory_lr == base.trajectory_lr
    assert ours.summary["val_curve"] == base.summary["val_curve"]


@pytest.mark.parametrize("base_name", BASES)
def test_env_and_rlscheduler_take_the_same_decisions(base_name):
    policy = _policy(0.5, seed=1, base=base_name)
    env = ResidualWorkloadEnv([_episode()], base=base_name)
    _play(env, policy.act)
    config = CellConfig(**CELL, schedule="rl_residual")
    ours = run_cell(config, hooks=lambda params, c: policy_hooks(policy, params, c.optimizer,
                                                                 c.lr, c.budget_steps))
    base = run_cell(_base_cell(base=base_name))
    assert ours.trajectory_lr == env.lrs
    assert ours.trajectory_lr != base.trajectory_lr  # the random policy did correct the LR


def test_correction_multiplies_greedys_own_lr_and_undoes_cleanly():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    residual = GreedyResidual(opt, 50, max_log_change=math.log(2.0))
    ref = GreedyLR(ref_opt, total_steps=50)
    losses = [1.0 / (t + 1) for t in range(30)]
    for t, loss in enumerate(losses):
        model.weight.grad = torch.ones_like(model.weight)
        residual.record(loss)
        ref.step(loss)
        if t == 5:
            residual.act(1.0)
        if t == 20:
            residual.act(0.0)
        m = 2.0 if 5 <= t < 20 else 1.0
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"] * m,
                                                           rel=1e-12)
    residual.act(-1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"] / 2)


def test_eval_base_correction_multiplies_eval_greedys_own_lr():
    """Over EvalGreedyLR: each validation loss is the base's decision, and the correction
    multiplies the LR the base chose (also across a brake descent)."""
    from learnlr.torch.clocked import EvalGreedyLR

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    residual = GreedyResidual(opt, 400, max_log_change=math.log(2.0), base="greedy_eval_budget")
    ref = EvalGreedyLR(ref_opt, total_steps=400)
    rng = np.random.default_rng(0)
    m = 1.0
    for t in range(400):
        loss = 1.0 / (t + 1) + (5.0 if 200 <= t < 260 else 0.0)  # a jump: the brake fires
        model.weight.grad = torch.ones_like(model.weight)
        residual.record(loss)
        ref.step(loss)
        if t % 20 == 19:
            val = float(rng.uniform(0.5, 1.0))
            residual.record_validation(val)
            ref.decide(val)
            a = float(rng.uniform(-1, 1))
            residual.act(a)
            m = 2.0 ** a
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"] * m,
                                                           rel=1e-12)
    assert ref.brake is not None and ref.brake.state_dict() == residual.greedy.brake.state_dict()
    assert residual.greedy.brake.state_dict()["num_brakes"] > 0  # the jump did brake


def test_unknown_base_is_a_value_error_naming_it():
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="base must be one of .*'cosine'"):
        GreedyResidual(opt, 10, max_log_change=1.0, base="cosine")
    with pytest.raises(ValueError, match="base must be one of"):
        ResidualTrainConfig(workloads=["digits-cnn"], base="cosine")


def test_paired_reward():
    assert paired_reward(0.5, 0.5, 2.0) == 0.0
    assert paired_reward(0.6, 0.5, 2.0) == pytest.approx(math.log(0.5 / 0.6))
    assert paired_reward(0.4, 0.5, 2.0) > 0
    assert paired_reward(None, 0.5, 2.0) == -2.0
    assert paired_reward(float("nan"), 0.5, 2.0) == -2.0
    assert paired_reward(1e9, 0.5, 2.0) == -2.0  # clipped
    assert paired_reward(0.5, None, 2.0) == 1.0  # the base diverged, this run finished


def test_worse_run_than_the_base_gets_a_negative_paired_reward():
    base = run_cell(_base_cell())
    env = ResidualWorkloadEnv([_episode(base_val=base.summary["final_val_loss"])])
    total, info = _play(env, lambda obs: -1.0)  # half the LR all run: slower on 40 steps
    assert total == pytest.approx(paired_reward(info["val_loss"], info["base_val_loss"], 2.0))
    assert info["val_loss"] != base.summary["final_val_loss"]


def test_divergence_ends_the_episode_with_the_penalty():
    env = ResidualWorkloadEnv([_episode(lr_scale=1e4)], divergence_penalty=3.0)
    total, info = _play(env, lambda obs: 1.0)
    assert info["diverged"] and total == -3.0


def test_second_training_run_on_the_same_store_recomputes_no_base_cell(tmp_path):
    config = ResidualTrainConfig(workloads=["digits-cnn"], optimizers=["sgd"], suite="tiny",
                                 seeds=1, lr_scales=[1.0, 10.0])
    episodes, computed = base_episodes(config, tmp_path)
    assert computed > 0 and len(episodes) == 2
    again, recomputed = base_episodes(config, tmp_path)
    assert recomputed == 0 and again == episodes
    assert {e.seed for e in episodes} == {1000}  # never an evaluation seed
    cell = episodes[0].base_cell(schedule_fingerprint("greedy_step"))
    assert run_cell(cell).summary["final_val_loss"] == episodes[0].base_val_loss


@pytest.mark.parametrize("base_name", BASES)
def test_rlscheduler_resume_is_exact(tmp_path, base_name):
    policy = _policy(0.5, seed=2, base=base_name)

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        return model, opt, RLScheduler(opt, policy, total_steps=60)

    def train(model, opt, sched, steps):
        for t in steps:
            x = torch.linspace(-1, 1, 4) * (t % 7)
            loss = (model(x) - 1.0).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss)
            if t % 10 == 9:
                sched.decide(loss.item() * 1.1)
        return [g["lr"] for g in opt.param_groups]

    full = train(*make(), range(60))
    model, opt, sched = make()
    train(model, opt, sched, range(25))
    state = json.loads(json.dumps(sched.state_dict()))
    model2, opt2, sched2 = make()
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    assert train(model2, opt2, sched2, range(25, 60)) == full


def test_direct_policy_has_no_decide_and_residual_rejects_a_bound():
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr_bound"):
        RLScheduler(opt, _policy(0.0), total_steps=10, lr_bound=lambda: 1.0)


def test_residual_policy_file_loads_without_sb3_or_pickle(tmp_path):
    stem = tmp_path / "residual"
    policy = _policy(0.3)
    save_policy(policy, stem)
    code = (
        "import sys, pickle\n"
        "sys.modules['stable_baselines3'] = None\n"
        "def no(*a, **k): raise AssertionError('pickle used')\n"
        "pickle.load = pickle.loads = no\n"
        "from learnlr.rl.policy import load_policy\n"
        f"p = load_policy({str(stem)!r})\n"
        "assert p.config.kind == 'greedy_residual'\n"
        "print(p.act([0.1] * len(p.config.feature_names)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(policy.act(np.full(10, 0.1, dtype=np.float32)))
    assert load_policy(stem).config.kind == "greedy_residual"


def test_train_residual_cli_end_to_end_and_store_reuse(tmp_path, capsys):
    from learnlr.cli import main

    argv = ["rl", "train-residual", "--store", str(tmp_path / "bench"), "--workloads",
            "digits-cnn", "--optimizers", "sgd", "--lr-scales", "1", "--seeds", "1",
            "--timesteps", "8", "--workers", "1", "--suite", "tiny", "--no-progress",
            "--out", str(tmp_path / "policy")]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "1 training cells" in first and "0 base cells computed" not in first
    policy = load_policy(tmp_path / "policy")
    assert policy.config.kind == "greedy_residual"
    assert "learnlr rl train-residual" in policy.config.training["command"]
    assert main(argv) == 0
    assert "0 base cells computed now" in capsys.readouterr().out


def test_train_residual_cli_bad_workload_is_a_usage_error(tmp_path, capsys):
    from learnlr.cli import main

    code = main(["rl", "train-residual", "--store", str(tmp_path), "--workloads", "nope",
                 "--out", str(tmp_path / "p"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "valid workloads" in err and "Traceback" not in err


@pytest.mark.parametrize("base_name", BASES)
def test_clone_targets_rebuild_the_envs_observations_from_the_store(tmp_path, base_name):
    """Cloned observations along a stored base run are the ones the env shows at zero
    action (but for the gradient feature, which the store does not keep), and the targets are
    the mean log LR ratio to the best run until the next evaluation."""
    from dataclasses import replace

    from learnlr.bench.benchmark import BenchRequest, run_benchmark
    from learnlr.bench.store import STORE_FILENAME, ExperimentStore
    from learnlr.bench.suites import SUITES
    from learnlr.rl.features import GREEDY_RESIDUAL_FEATURE_NAMES
    from learnlr.rl.residual_training import _clone_cell, clone_targets

    suite = replace(SUITES["tiny"], lr_scales=(1.0,))
    run_benchmark(BenchRequest(suite=suite, out_dir=tmp_path, workloads=("reviews-imbalanced",),
                               optimizers=("sgd",), schedules=(base_name, "constant"),
                               seeds=1))
    config = ResidualTrainConfig(workloads=["reviews-imbalanced"], optimizers=["sgd"],
                                 lr_scales=[1.0], suite="tiny", base=base_name)
    obs, actions, used = clone_targets(config, tmp_path)
    assert used == 1 and obs.shape == (len(actions), len(GREEDY_RESIDUAL_FEATURE_NAMES))
    assert np.all(np.abs(actions) <= 1.0)
    with ExperimentStore(tmp_path / STORE_FILENAME, readonly=True) as store:
        base = next(c for c in store.cells(purpose="main")
                    if c.config["schedule"] == base_name)
        trajectory = store.trajectory(base.hash)
    own_obs: list[np.ndarray] = []
    own_actions: list[float] = []
    assert _clone_cell(trajectory, trajectory.lr, math.log(2.0), own_obs, own_actions)
    assert own_actions == [0.0] * len(own_actions)  # imitating itself: no correction
    doubled: list[float] = []
    halfway = [lr * math.sqrt(2.0) for lr in trajectory.lr]
    _clone_cell(trajectory, [lr * 2 for lr in trajectory.lr], math.log(2.0), [], doubled)
    assert doubled == pytest.approx([1.0] * len(own_actions))
    assert len(doubled) == len(own_actions)
    half: list[float] = []
    _clone_cell(trajectory, halfway, math.log(2.0), [], half)
    assert half == pytest.approx([0.5] * len(own_actions))
    c = base.config
    env = ResidualWorkloadEnv([ResidualEpisode(
        c["workload"], c["optimizer"], c["seed"], c["base_lr"], 1.0, c["budget_steps"],
        c["eval_every"], base.results["final_val_loss"])], base=base_name)
    seen = [env.reset(seed=0)[0]]
    for _ in own_actions[:-1]:
        seen.append(env.step(np.zeros(1))[0])
    grad = GREEDY_RESIDUAL_FEATURE_NAMES.index("log_grad_ratio")
    keep = [i for i in range(obs.shape[1]) if i != grad]
    assert len(own_obs) == c["budget_steps"] // c["eval_every"] - 1 >= 2
    np.testing.assert_allclose(np.stack(seen)[:, keep], np.stack(own_obs)[:, keep], rtol=1e-5,
                               atol=1e-6)


def test_lower_only_correction_never_raises_greedys_lr():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    residual = GreedyResidual(opt, 50, max_log_change=math.log(4.0), lower_only=True)
    model.weight.grad = torch.ones_like(model.weight)
    residual.record(1.0)
    before = opt.param_groups[0]["lr"]
    residual.act(1.0)  # a raise: acts as no correction at all
    assert residual.multiplier == 1.0 and opt.param_groups[0]["lr"] == before
    residual.act(-0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(before / 2)
    assert residual.observation()[-3] == -0.5  # the correction feature is the effective action


def test_lower_only_is_read_from_the_policy_file(tmp_path):
    config = ResidualTrainConfig(workloads=["digits-cnn"], lower_only=True).policy_config()
    network = PolicyNetwork(config)
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
        network.head.bias.fill_(1.0)  # always "raise"
    save_policy(network, tmp_path / "lower")
    policy = load_policy(tmp_path / "lower")
    assert policy.config.lower_only
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    sched = RLScheduler(opt, policy, total_steps=20)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    ref = GreedyLR(ref_opt, total_steps=20)
    for t in range(20):
        sched.step(1.0 / (t + 1))
        ref.step(1.0 / (t + 1))
        sched.decide(1.0)
        assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]


def test_correction_follows_greedy_through_decisions_and_the_anneal():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    residual = GreedyResidual(opt, 60, max_log_change=math.log(4.0), lower_only=True)
    ref = GreedyLR(ref_opt, total_steps=60)
    rng = np.random.default_rng(0)
    for t in range(70):  # decisions both ways, the anneal, and past the budget
        loss = float(1.0 / (t + 1) + 0.05 * rng.random())
        model.weight.grad = torch.ones_like(model.weight)
        residual.record(loss)
        ref.step(loss)
        if t == 3:
            residual.act(-1.0)
        assert opt.param_groups[0]["lr"] == pytest.approx(
            ref_opt.param_groups[0]["lr"] * (0.25 if t >= 3 else 1.0), rel=1e-12)


def test_policy_file_keeps_its_base_and_old_files_correct_greedy_step(tmp_path):
    policy = _policy(0.1, base="greedy_eval_budget")
    save_policy(policy, tmp_path / "p")
    assert load_policy(tmp_path / "p").config.base == "greedy_eval_budget"
    raw = json.loads((tmp_path / "p.json").read_text())
    del raw["base"]  # a file written before the field existed
    (tmp_path / "p.json").write_text(json.dumps(raw))
    assert load_policy(tmp_path / "p").config.base == "greedy_step"
    raw["base"] = "cosine"
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="base must be one of"):
        load_policy(tmp_path / "p")


_INTERRUPTED_TRAINING = '''
import sys

from learnlr.rl.residual_env import ResidualEpisode
from learnlr.rl.residual_training import ResidualTrainConfig, train_residual


def main():
    episodes = [ResidualEpisode("digits-cnn", "sgd", seed, 0.05, 1.0, 20, 5, 1.0)
                for seed in (1000, 1001)]
    config = ResidualTrainConfig(workloads=["digits-cnn"], timesteps=10_000_000, n_envs=2,
                                 n_steps=4, batch_size=8, n_epochs=1)
    try:
        train_residual(config, episodes, partial=sys.argv[1])
    except KeyboardInterrupt as exc:
        print(type(exc).__name__, exc.timesteps, exc.path, file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # the env workers are spawned processes that import this file
    main()
'''


def test_ctrl_c_in_parallel_residual_training_saves_the_actor_and_stops_the_workers(tmp_path):
    # Real processes and a real SIGINT to the group: the env workers get it too and exit, and
    # closing them must neither hang nor replace the interrupt with a broken-pipe error.
    import os
    import signal
    import time

    script = tmp_path / "train.py"
    script.write_text(_INTERRUPTED_TRAINING)
    partial = tmp_path / "p.partial"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(partial)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "p.partial.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("TrainingInterrupted ") and "Traceback" not in err, err
    timesteps = int(last.split()[1])
    policy = load_policy(partial)
    assert policy.config.kind == "greedy_residual" and timesteps >= 8
