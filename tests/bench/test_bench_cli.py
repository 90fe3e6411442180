"""`learnlr bench | report | list` end to end, and their usage errors."""

from __future__ import annotations

import json

import pytest
from bench_toy_workload import TOY_PLUGIN, strip_timing

from learnlr.bench.report import track_table, track_title
from learnlr.bench.store import ExperimentStore
from learnlr.cli import main

TOY_ARGS = ["--plugin", TOY_PLUGIN, "--workloads", "toy-logreg", "--schedules", "constant",
            "cosine", "greedy", "sgd_hd", "--seeds", "2"]


def test_real_tiny_suite_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["bench", "--suite", "tiny", "--workers", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # tiny = digits-cnn x SGD x (constant, cosine, wsd, greedy_step, greedy_eval) x 1 seed
    # x 3 LR tracks.
    assert summary["cells"] == 15
    rivals = {"constant", "cosine", "wsd", "greedy_eval"}
    assert set(summary["greedy_vs"]) == rivals
    assert set(summary["by_lr_scale"]) == {"0.1", "1", "10"}
    assert summary["by_lr_scale"]["1"]["greedy_vs"] == summary["greedy_vs"]
    for track in summary["by_lr_scale"].values():
        assert set(track["greedy_vs"]) == rivals and track["n_pairs"] == 1
        for entry in track["greedy_vs"].values():
            assert entry["wins"] + entry["ties"] + entry["losses"] == 1
            assert entry["as_good_or_better"] == (entry["wins"] + entry["ties"]) / 1
        assert min(r["median"] for r in track["ratio_to_best"].values()) == 1.0
    report = (out / "report.md").read_text()
    assert report.index("## Headline") < report.index("## Base learning rates")
    assert "digits-cnn" in report
    for png in ("lr_schedules.png", "loss_histories.png", "performance_profiles.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "as-good-or-better" in printed and "speedup vs cosine" in printed
    with ExperimentStore(out / "runs.sqlite") as store:
        # 2 tuning runs; the winner's seed-0 constant run is reused as a main cell.
        assert store.count_cells() == 16
        assert store.count_cells("main") == 15
        assert len(store.base_lrs()) == 1


def test_toy_bench_is_deterministic_and_resumable(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["bench", "--suite", "tiny", *TOY_ARGS, "--workers", "1", "--out", str(a)]) == 0
    # A pool of two spawned worker processes must give the same numbers as one process.
    assert main(["bench", "--suite", "tiny", *TOY_ARGS, "--workers", "2", "--out", str(b)]) == 0
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    # (constant, cosine, greedy_step, greedy_reactive, greedy_eval, greedy_eval_budget) x 3 LR
    # tracks + sgd_hd_group, sgd_hd_param (tuned track only), x 2 seeds
    assert sa["cells"] == (6 * 3 + 2) * 2
    assert strip_timing(sa) == strip_timing(sb)
    with ExperimentStore(a / "runs.sqlite") as store:
        before = {c.hash: c.results for c in store.cells()}
    # Re-running skips every finished cell: nothing changes, not even wall times.
    assert main(["bench", "--suite", "tiny", *TOY_ARGS, "--workers", "1", "--out", str(a)]) == 0
    with ExperimentStore(a / "runs.sqlite") as store:
        assert {c.hash: c.results for c in store.cells()} == before
    # `learnlr report` rebuilds the same summary from the store alone.
    (a / "summary.json").unlink()
    capsys.readouterr()
    assert main(["report", str(a), "--plugin", TOY_PLUGIN]) == 0
    assert strip_timing(json.loads((a / "summary.json").read_text())) == strip_timing(sa)
    # The terminal shows report.md's headline: the seed-mean table of each LR track.
    printed = capsys.readouterr().out.splitlines()
    report = (a / "report.md").read_text()
    for scale, track in sa["by_lr_scale"].items():
        title = track_title(scale, track)
        assert title == f"base LR x{scale} (1 pair, seed means)" and f"### {title}" in report
        assert any(f"GreedyLR as-good-or-better, {title}" in line for line in printed)
        columns, rows = track_table(track)
        assert "greedy_eval_budget AGoB (1% rel)" in columns
        for row in rows:
            assert "| " + " | ".join(row) + " |" in report
            assert any(line.split() == ["│", *" │ ".join(row).split(), "│"] for line in printed)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workloads", "nope"], ["--workloads", "'nope'", "digits-cnn", "toy-logreg"]),
        (["--schedules", "cosinus"], ["--schedules", "'cosinus'", "greedy_step", "onecycle"]),
        (["--optimizers", "lion"], ["--optimizers", "'lion'", "adamw", "adagrad"]),
        (["--plugin", "no_such_module_xyz"], ["--plugin", "no_such_module_xyz"]),
        (["--schedules", ","], ["--schedules", "at least one"]),
        (["--schedules", "prodigy", "--optimizers", "sgd"], ["no cells", "prodigy"]),
    ],
)
def test_unknown_names_exit_2_listing_valid_ones(tmp_path, capsys, args, expected):
    base = ["bench", "--suite", "tiny", "--plugin", TOY_PLUGIN, "--out", str(tmp_path / "x")]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert not (tmp_path / "x" / "runs.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--seeds", "abc"], "--seeds"),
        (["--seeds", "0"], "--seeds"),
        (["--workers", "-1"], "--workers"),
        (["--suite", "huge"], "--suite"),
        (["--backend", "slurm"], "--backend"),
    ],
)
def test_malformed_options_exit_2_naming_the_option(tmp_path, capsys, args, option):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_report_without_store_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "runs.sqlite" in capsys.readouterr().err


def test_list_shows_workloads_schedules_and_suites(capsys):
    assert main(["list", "--plugin", TOY_PLUGIN]) == 0
    out = capsys.readouterr().out
    for name in ("toy-logreg", "digits-cnn", "greedy_step", "hf_greedy", "sls", "quick"):
        assert name in out


def test_tune_per_schedule_gives_each_fixed_schedule_its_own_grid_lr(tmp_path):
    out = tmp_path / "per"
    args = ["bench", "--suite", "tiny", "--plugin", TOY_PLUGIN, "--workloads", "toy-logreg",
            "--optimizers", "sgd", "--schedules", "constant", "cosine", "greedy_step",
            "--seeds", "1", "--workers", "1", "--tune", "per-schedule", "--out", str(out)]
    assert main(args) == 0
    with ExperimentStore(out / "runs.sqlite") as store:
        shared = store.base_lrs()[0]["base_lr"]
        # cosine ran the tiny grid itself (the winner's seed-0 run is reused as its main cell)
        tune = [c for c in store.cells() if c.config["schedule"] == "cosine"
                and c.config.get("lr_scale", 1.0) == 1.0]
        assert sorted(c.config["base_lr"] for c in tune) == [0.03, 0.1]
        best = min(tune, key=lambda c: (c.results["final_val_loss"], c.config["base_lr"]))
        main_cells = {(c.config["schedule"], c.config.get("lr_scale", 1.0)): c.config["base_lr"]
                      for c in store.cells(purpose="main")}
    assert main_cells[("cosine", 1.0)] == best.config["base_lr"]
    assert main_cells[("cosine", 0.1)] == best.config["base_lr"]  # tracks are relative to it
    assert main_cells[("greedy_step", 1.0)] == shared  # adaptive schedules keep the shared LR
    assert main_cells[("constant", 1.0)] == shared
    # The recorded command reruns this mode, also in a rebuilt report.
    assert "--tune per-schedule" in (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert main(["report", str(out), "--plugin", TOY_PLUGIN]) == 0
    assert "--tune per-schedule" in (out / "report.md").read_text()


def test_tune_mode_is_checked_at_the_boundary(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--suite", "tiny", "--tune", "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_a_selection_on_a_fuller_store_says_how_to_rebuild_the_whole_report(tmp_path, capsys):
    out = tmp_path / "toy"
    base = ["bench", "--suite", "tiny", "--plugin", TOY_PLUGIN, "--workloads", "toy-logreg",
            "--optimizers", "sgd", "--seeds", "1", "--workers", "1", "--out", str(out)]
    assert main([*base, "--schedules", "constant", "cosine"]) == 0
    assert "learnlr report" not in capsys.readouterr().out  # the report covers the whole store
    assert main([*base, "--schedules", "cosine"]) == 0
    printed = capsys.readouterr().out
    assert "the report covers this run's 3 cells" in printed and "holds 6" in printed
    assert json.loads((out / "summary.json").read_text())["cells"] == 3
    assert main(["report", str(out), "--plugin", TOY_PLUGIN]) == 0
    assert json.loads((out / "summary.json").read_text())["cells"] == 6
