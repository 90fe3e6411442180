"""`learnlr rl train` / `learnlr rl eval` through the real top-level CLI."""

from __future__ import annotations

import json
import math

import pytest

from learnlr.cli import main
from learnlr.rl import load_policy


def test_rl_train_writes_a_loadable_policy(tmp_path, capsys):
    out = tmp_path / "policy"
    code = main(["rl", "train", "--timesteps", "64", "--n-envs", "1", "--n-steps", "64",
                 "--seed", "3", "--reward", "area", "--max-change", "3", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    policy = load_policy(out)
    config = policy.config.training["config"]
    assert config["seed"] == 3 and config["reward"] == "area"
    assert policy.config.max_log_change == pytest.approx(math.log(3))
    assert policy.config.training["command"] == (
        f"learnlr rl train --timesteps 64 --seed 3 --n-envs 1 --n-steps 64 --reward area "
        f"--gamma 0.99 --max-change 3.0 --out {out}")
    assert "wrote" in capsys.readouterr().out


def test_rl_eval_prints_a_summary_and_writes_plots(tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    code = main(["rl", "eval", "--policy", "nmf", "--instances", "1", "--budget", "60",
                 "--json", str(summary_path), "--plots", str(tmp_path)])
    assert code == 0
    summary = json.loads(summary_path.read_text())
    assert summary["instances"] == 1
    assert set(summary["median_steps"]) >= {"rl", "step", "cosine", "greedy", "constant"}
    assert (tmp_path / "rl_vs_handmade_instance0.png").stat().st_size > 1000
    assert (tmp_path / "rl_ratio_histogram.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "median steps" in printed and "best single step-decay configuration" in printed
    assert not printed.lstrip().startswith("{")  # a table, not raw JSON


def test_rl_eval_with_a_missing_policy_is_a_usage_error(tmp_path, capsys):
    assert main(["rl", "eval", "--policy", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["rl", "train", "--timesteps", "0", "--out", "x"],
                                  ["rl", "eval", "--instances", "many"]])
def test_malformed_numbers_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_rl_train_with_behaviour_cloning_warm_start(tmp_path):
    out = tmp_path / "bc"
    code = main(["rl", "train", "--timesteps", "64", "--n-envs", "1", "--n-steps", "64",
                 "--bc", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    training = load_policy(out).config.training
    assert training["warm_start"] is True and "--bc 1" in training["command"]


def test_rl_train_on_a_corrupt_store_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    store = tmp_path / "runs.sqlite"
    store.write_bytes(b"not a database at all\n" * 10)
    before = store.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "learnlr.cli", "rl", "train", "--bc", "2", "--bc-store", str(store),
         "--workloads", "mnist1d", "--timesteps", "10", "--out", str(tmp_path / "p")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert "is not a SQLite database" in done.stderr
    assert store.read_bytes() == before  # never overwritten


@pytest.mark.parametrize("argv", [
    ["rl", "train", "--timesteps", "64", "--out", "{dir}"],            # a folder, not a stem
    ["rl", "train", "--timesteps", "64", "--out", "{file}/p"],
    ["rl", "train-residual", "--store", "{dir}", "--workloads", "mnist1d", "--out", "{file}/p"],
    ["rl", "eval", "--json", "{file}/summary.json"],
    ["rl", "eval", "--plots", "{file}/plots"],
])
def test_an_unwritable_output_exits_2_before_any_work(tmp_path, capsys, argv):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    argv = [a.format(dir=tmp_path, file=a_file) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is a folder, not a file" in err or "is a file, not a folder" in err


def _interactive_sigint() -> None:
    # As tests/bench: a shell starts background jobs with SIGINT ignored and children inherit
    # it; a terminal's foreground job (what Ctrl-C reaches) has the default handler.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_ppo_saves_the_partial_policy_and_exits_130(tmp_path):
    # A real process and a real SIGINT to its process group (what Ctrl-C in a terminal does).
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "policy"
    partial = tmp_path / "policy.partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "learnlr.cli", "rl", "train", "--timesteps", "10000000",
         "--n-envs", "1", "--n-steps", "8", "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_interactive_sigint)
    try:
        deadline = time.monotonic() + 120
        while not partial.exists() and time.monotonic() < deadline:  # after the first update
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert partial.exists(), "no partial policy within 120 s"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"learnlr rl train: interrupted at (\d+) timesteps; partial policy "
                         r"saved to (\S+) and (\S+)", last)
    assert match, err
    assert match.group(2, 3) == (str(tmp_path / "policy.partial.safetensors"), str(partial))
    policy = load_policy(tmp_path / "policy.partial")
    assert policy.config.kind == "direct" and policy.config.training["partial"] is True
    assert policy.config.training["timesteps_done"] == int(match.group(1)) >= 8
    assert not (tmp_path / "policy.json").exists()  # the run did not finish


def test_a_finished_run_replaces_its_partial_policy(tmp_path):
    out = tmp_path / "policy"
    for stale in ("policy.partial.json", "policy.partial.safetensors"):  # an earlier Ctrl-C's
        (tmp_path / stale).write_text("stale")
    assert main(["rl", "train", "--timesteps", "16", "--n-envs", "1", "--n-steps", "8",
                 "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.safetensors"]


@pytest.mark.parametrize("policy", ["deep", "nmf_residual"])
def test_rl_eval_of_a_residual_policy_is_one_line_and_exit_2(capsys, policy):
    from learnlr.rl.nmf_residual import pretrained_residual_path

    name = str(pretrained_residual_path()) if policy == "nmf_residual" else policy
    assert main(["rl", "eval", "--policy", name, "--instances", "1", "--budget", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "kind 'direct'" in err and "residual" in err


@pytest.mark.parametrize(("init", "cause"), [("deep", "'direct' policy"),
                                             ("small", "hidden_sizes [4]")])
def test_rl_train_with_an_unusable_init_exits_2_before_training(tmp_path, capsys, init, cause):
    from learnlr.rl import PolicyConfig, PolicyNetwork, save_policy

    if init == "small":
        save_policy(PolicyNetwork(PolicyConfig(hidden_sizes=[4])), tmp_path / "small")
        init = str(tmp_path / "small")
    assert main(["rl", "train", "--timesteps", "8", "--n-envs", "1", "--n-steps", "8",
                 "--init", init, "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--init" in err and cause in err
    assert not list(tmp_path.glob("p*"))


# Tiny runs and an unknown workload: were the seed accepted, each would stop at once.
@pytest.mark.parametrize(("option", "value", "command"), [
    ("--seed", "-1", ["rl", "train", "--timesteps", "8", "--n-steps", "8", "--n-envs", "1"]),
    ("--seed", "4294967296", ["rl", "train", "--timesteps", "8", "--n-steps", "8",
                              "--n-envs", "1"]),
    ("--seed", "-1", ["rl", "train-residual", "--workloads", "nope", "--store", "{tmp}"]),
    ("--first-seed", "-1", ["rl", "train-residual", "--workloads", "nope", "--store", "{tmp}"]),
])
def test_a_seed_out_of_range_is_a_usage_error_naming_the_option(tmp_path, capsys, option,
                                                                 value, command):
    argv = [a.format(tmp=tmp_path) for a in command]
    with pytest.raises(SystemExit) as info:
        main([*argv, option, value, "--out", str(tmp_path / "p"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}: expected an integer in [0, 2**32), got {value}" in err


@pytest.mark.parametrize("budget", ["1", "3"])
def test_rl_eval_runs_on_budgets_under_four_steps(capsys, budget):
    # The step-decay grid's step size is max(1, budget // 4): StepLR refuses 0.
    assert main(["rl", "eval", "--instances", "1", "--budget", budget]) == 0
    assert "median steps" in capsys.readouterr().out
