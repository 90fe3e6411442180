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
