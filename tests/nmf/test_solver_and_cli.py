"""Solver behaviour (oracles, determinism, projection) and the `learnlr nmf solve` command."""

from __future__ import annotations

import json

import pytest
import torch

from learnlr.cli import main
from learnlr.nmf import GradientOracle, StochasticNMF, make_problem, planted_problem, real_problem
from learnlr.nmf import solve as nmf_solve


def test_same_seed_same_run_and_different_seed_differs():
    p = planted_problem(20, 15, 3, seed=0)
    oracle = GradientOracle("minibatch", batch_fraction=0.3)
    a = nmf_solve(p, steps=50, oracle=oracle, seed=1)
    b = nmf_solve(p, steps=50, oracle=oracle, seed=1)
    c = nmf_solve(p, steps=50, oracle=oracle, seed=2)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_minibatch_oracle_is_unbiased():
    p = planted_problem(12, 10, 2, seed=0)
    nmf = StochasticNMF(p, oracle=GradientOracle("minibatch", batch_fraction=0.3))
    R = nmf.W @ nmf.H - nmf.X
    exact = (R @ nmf.H.T, nmf.W.T @ R)
    gen = torch.Generator().manual_seed(0)
    draws = [nmf.oracle.gradients(nmf.W, nmf.H, R, gen) for _ in range(4000)]
    mean_w = torch.stack([d[0] for d in draws]).mean(0)
    mean_h = torch.stack([d[1] for d in draws]).mean(0)
    scale_w, scale_h = exact[0].abs().max(), exact[1].abs().max()
    assert float((mean_w - exact[0]).abs().max()) < 0.05 * float(scale_w)
    assert float((mean_h - exact[1]).abs().max()) < 0.05 * float(scale_h)


def test_projection_keeps_factors_in_the_box_and_cap_respects_the_bound():
    p = planted_problem(15, 12, 3, seed=1)
    run = nmf_solve(p, lr=1e9, steps=100, clip=1.5, seed=0,
                    oracle=GradientOracle("additive", sigma=0.5))
    assert not run.diverged
    assert all(lr <= 0.95 * b * (1 + 1e-12) for lr, b in zip(run.lrs, run.bounds, strict=True))


def test_real_matrices_load_offline_and_factorize():
    digits = real_problem("digits", 8)
    assert digits.shape == (1797, 64) and digits.X.min() >= 0 and digits.X.max() <= 1
    wine = real_problem("wine", 3)
    run = nmf_solve(wine, steps=150, seed=0)
    assert run.losses[-1] < 0.3 * run.losses[0]
    assert real_problem("breast-cancer", 4).shape == (569, 30)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: planted_problem(5, 5, 6), "rank"),
        (lambda: planted_problem(5, 5, 2, noise=-1.0), "noise"),
        (lambda: make_problem("planted:4y4", 2), "planted"),
        (lambda: real_problem("mnist", 2), "name"),
        (lambda: GradientOracle("dropout"), "mode"),
        (lambda: GradientOracle("minibatch", batch_fraction=0.0), "batch_fraction"),
        (lambda: nmf_solve(planted_problem(5, 5, 2), steps=0), "steps"),
        (lambda: StochasticNMF(planted_problem(5, 5, 2), clip=-1.0), "clip"),
        (lambda: planted_problem(5, 5, 2, seed=-1), r"seed must be an integer in \[0, 2\*\*32\)"),
        (lambda: planted_problem(5, 5, 2, seed=2**32), "seed"),
        (lambda: nmf_solve(planted_problem(5, 5, 2), steps=5, seed=-1), "seed"),
        (lambda: nmf_solve(planted_problem(5, 5, 2), steps=5, seed=1.5), "seed"),
    ],
)
def test_invalid_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cli_solve_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "run.json"
    png = tmp_path / "run.png"
    code = main(["nmf", "solve", "--problem", "planted:20x15", "--rank", "2", "--steps", "60",
                 "--schedule", "cosine", "--no-progress", "--json", str(out), "--plot", str(png)])
    assert code == 0
    data = json.loads(out.read_text())
    assert len(data["losses"]) == 61 and data["final_loss"] < 0.2 * data["initial_loss"]
    assert png.stat().st_size > 1000
    assert '"schedule": "cosine"' in capsys.readouterr().out


@pytest.mark.parametrize("schedule", ["constant", "step", "greedy", "rl"])
def test_cli_solve_every_schedule_runs(schedule):
    assert main(["nmf", "solve", "--problem", "planted:15x10", "--rank", "2", "--steps", "30",
                 "--schedule", schedule, "--no-progress"]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["nmf", "solve", "--problem", "planted:abc", "--no-progress"],
        ["nmf", "solve", "--schedule", "warp", "--no-progress"],
        ["nmf", "solve", "--oracle", "minibatch", "--batch-fraction", "2", "--no-progress"],
    ],
)
def test_cli_usage_errors_return_2(argv, capsys):
    assert main(argv) == 2
    assert "learnlr nmf solve:" in capsys.readouterr().err


def test_cli_malformed_numbers_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["nmf", "solve", "--steps", "zero"])
    assert info.value.code == 2


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_cli_output_under_a_file_exits_2_before_solving(tmp_path, capsys, option):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["nmf", "solve", "--steps", "10", option, str(a_file / "out.json")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in err and "is a file, not a folder" in err


@pytest.mark.parametrize("seed", ["-1", "4294967296", "one"])
def test_cli_seed_out_of_range_exits_2_naming_the_option(capsys, seed):
    with pytest.raises(SystemExit) as info:
        main(["nmf", "solve", "--steps", "5", "--seed", seed, "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --seed: expected an integer in [0, 2**32)" in err


def test_cli_rl_residual_without_gymnasium_names_the_extra_and_exits_2():
    # A real process in which gymnasium cannot be imported (the rl extra missing); the nmf
    # command itself needs only the bench extra, so the schedule is where it is found out.
    import subprocess
    import sys

    code = ("import sys; sys.modules['gymnasium'] = None\n"
            "from learnlr.cli import main\n"
            "sys.exit(main(['nmf', 'solve', '--schedule', 'rl_residual', '--steps', '5', "
            "'--no-progress']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == ("learnlr: error: schedule 'rl_residual' needs the rl extra "
                                   "(module 'gymnasium' is missing): pip install "
                                   '"learnlr[rl]"')
