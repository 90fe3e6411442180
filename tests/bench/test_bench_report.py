"""`learnlr report`: filters, the verdict, small multiples, one palette, never-moved flags."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from bench_toy_workload import TOY_PLUGIN

from learnlr.bench.plots import schedule_colour, seed0_panels
from learnlr.bench.records import CellConfig
from learnlr.bench.report import HOLDS_ITS_OWN, render_markdown, verdict_markdown, write_report
from learnlr.bench.runner import run_cell
from learnlr.bench.schedules import SCHEDULES
from learnlr.bench.store import ExperimentStore
from learnlr.cli import main

SCHEDULE_ARGS = ["--schedules", "constant", "cosine", "greedy", "plateau", "--seeds", "1",
                 "--workers", "1", "--plugin", TOY_PLUGIN, "--optimizers", "sgd"]


@pytest.fixture(scope="module")
def two_suites(tmp_path_factory) -> Path:
    """One folder holding a tiny run of two toy workloads and a quick run of one."""
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["bench", "--suite", "tiny", "--workloads", "toy-logreg", "toy-linreg",
                 *SCHEDULE_ARGS, "--out", str(out)]) == 0
    assert main(["bench", "--suite", "quick", "--workloads", "toy-logreg", *SCHEDULE_ARGS,
                 "--out", str(out)]) == 0
    return out


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_report_filters_by_suite_and_workloads_into_another_folder(two_suites, tmp_path):
    assert main(["report", str(two_suites), "--out", str(tmp_path / "all")]) == 0
    # Unfiltered, the two budgets of toy-logreg are kept apart (never paired).
    medians = _summary(tmp_path / "all")["medians"]
    assert {g.split("/")[0] for g in medians} == {"toy-logreg@30", "toy-logreg@60", "toy-linreg"}

    assert main(["report", str(two_suites), "--suite", "tiny", "--out", str(tmp_path / "t")]) == 0
    assert set(_summary(tmp_path / "t")["medians"]) == {"toy-logreg/sgd", "toy-linreg/sgd"}
    assert main(["report", str(two_suites), "--suite", "tiny", "--workloads", "toy-linreg",
                 "--out", str(tmp_path / "tl")]) == 0
    summary = _summary(tmp_path / "tl")
    # (constant, cosine, greedy_step, greedy_eval, greedy_reactive, greedy_eval_budget) x 3 LR
    # tracks + plateau (tuned track only)
    assert set(summary["medians"]) == {"toy-linreg/sgd"} and summary["cells"] == 6 * 3 + 1
    assert main(["report", str(two_suites), "--suite", "quick", "--out", str(tmp_path / "q")]) == 0
    assert set(_summary(tmp_path / "q")["medians"]) == {"toy-logreg/sgd"}
    # --out leaves DIR's own report as bench wrote it (the quick run's).
    assert "--suite quick" in (two_suites / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--suite", "full"], ["--suite full", "tiny", "quick"]),
     (["--workloads", "digits-cnn"], ["--workloads", "digits-cnn", "toy-linreg"])],
)
def test_report_filter_that_matches_nothing_is_a_usage_error(two_suites, tmp_path, capsys, args,
                                                             expected):
    assert main(["report", str(two_suites), *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert not (tmp_path / "x" / "report.md").exists()


def test_report_leads_with_the_verdict_and_flags_schedules_that_never_moved(two_suites, tmp_path):
    assert main(["report", str(two_suites), "--suite", "tiny", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert text.index("## Should I use GreedyLR?") < text.index("## Headline")
    assert "At the tuned base LR, `greedy_step` was as good as or better than" in text
    for name in ("lr_schedules", "loss_histories"):  # one figure per LR track, all linked
        for suffix in ("", "_x0.1", "_x10"):
            assert (tmp_path / f"{name}{suffix}.png").read_bytes()[:4] == b"\x89PNG"
            assert f"]({name}{suffix}.png)" in text
    section = text.split("## Cells where the schedule never changed the LR")[1].split("\n## ")[0]
    with ExperimentStore(two_suites / "runs.sqlite") as store:
        flat = []
        for cell in store.cells(purpose="main"):
            lr = [v for v in store.trajectory(cell.hash).lr if v is not None]
            if cell.suite == "tiny" and cell.config["schedule"] != "constant" \
                    and max(lr) == min(lr):
                flat.append(cell.config)
    assert flat, "expected some schedule to keep the LR on this tiny budget"
    for c in flat:
        scale = f"x{c.get('lr_scale', 1.0):g}"
        assert f"| {c['schedule']} | {c['workload']} | sgd | {scale} |" in section
    assert "| cosine |" not in section  # cosine always moves the LR
    assert "| constant |" not in section  # a constant LR is no news


def test_small_multiples_cover_every_workload_optimizer_pair(two_suites):
    with ExperimentStore(two_suites / "runs.sqlite") as store:
        cells = [c for c in store.cells(purpose="main") if c.suite == "tiny"]
        tracks = seed0_panels(store, {c.hash for c in cells})
    assert set(tracks) == {0.1, 1.0, 10.0}
    for scale, panels in tracks.items():
        assert set(panels) == {("toy-linreg", "sgd"), ("toy-logreg", "sgd")}
        tracked = {"constant", "cosine", "greedy_step", "greedy_eval", "greedy_reactive",
                   "greedy_eval_budget"}
        for runs in panels.values():
            # plateau runs on the tuned track only
            assert set(runs) == (tracked | {"plateau"} if scale == 1.0 else tracked)
            assert {t.config.get("lr_scale", 1.0) for t in runs.values()} == {scale}


def test_one_colour_per_schedule_everywhere():
    names = list(SCHEDULES)[:20]
    colours = [schedule_colour(n) for n in names]
    assert len(set(colours)) == len(names)  # distinct while the palette lasts
    assert colours == [schedule_colour(n) for n in names]  # and stable
    assert schedule_colour("greedy_step") != schedule_colour("greedy_eval")


def _tally(agob: float, n: int = 4) -> dict:
    wins = round(agob * n)
    return {"as_good_or_better": agob, "wins": wins, "ties": 0, "losses": n - wins, "n": n}


def _synthetic(rates: dict[str, float]) -> dict:
    """A summary with greedy_step's rates against each rival (4 pairs each)."""
    rel = {rival: _tally(rate) for rival, rate in rates.items()}
    areas = {s: {"area": 0.5, "tau": [], "rho": []} for s in [*rates, "greedy_step"]}
    return {
        "cells": 4 * (len(rates) + 1),
        "comparisons": {"greedy_step": {"rel_1pct": rel, "abs_0.1": rel}},
        "greedy_vs": rel,
        "performance_profiles": {"final_loss": areas, "steps_to_target": areas},
        "medians": {"w/sgd": {s: {"n": 4, "final_val_loss": 1.0, "final_metric": 1.0,
                                  "diverged": 0} for s in [*rates, "greedy_step"]}},
        "speedup_vs_cosine": {}, "stage_rates": {}, "per_workload": {},
        "timing": {"wall_s": {}, "cpu_s": {}},
    }


@pytest.mark.parametrize(
    ("rates", "verdict"),
    [
        ({"constant": 1.0, "cosine": 0.75, "step": 0.5}, "**use it**"),
        # GreedyLR's own variants are in the tables but are not rivals in the verdict.
        ({"constant": 1.0, "cosine": 0.75, "greedy_eval": 0.0, "greedy_reactive": 0.0,
          "greedy_eval_budget": 0.0}, "**use it**"),
        ({"constant": 0.75, "cosine": 0.25, "step": 0.5}, "instead of a constant LR"),
        ({"constant": 0.75, "cosine": 0.25, "step": 0.25}, "only as a replacement"),
        ({"constant": 0.25, "cosine": 0.25, "step": 0.25}, "not on this evidence"),
    ],
)
def test_verdict_follows_the_stated_rule(rates, verdict):
    assert HOLDS_ITS_OWN == 0.5
    text = "\n".join(verdict_markdown(_synthetic(rates)))
    assert verdict in text
    assert f"constant in {rates['constant']:.0%}" in text


def _track(rival_rate: float, ratio: float) -> dict:
    return {"subject": "greedy_step", "n_pairs": 4, "greedy_vs": {"cosine": _tally(rival_rate)},
            "effect_sizes": {"cosine": {"median_ratio": ratio, "ci95": [ratio - 0.1, ratio + 0.1],
                                        "n": 4}}}


def test_by_lr_scale_gives_one_headline_table_per_track_first():
    summary = _synthetic({"constant": 1.0, "cosine": 0.5})
    summary["by_lr_scale"] = {"10": _track(0.75, 0.5), "0.1": _track(1.0, 0.25),
                              "1": _track(0.5, 0.97)}
    text = render_markdown(summary, [], {})
    heads = [text.index(f"### base LR x{s} (4 pairs, seed means)") for s in ("0.1", "1", "10")]
    assert text.index("## Should I use GreedyLR?") < heads[0] < heads[1] < heads[2]
    assert heads[2] < text.index("## Effect sizes") < text.index("## Detail")
    assert "| cosine | 75% | 3/0/1 |" in text
    assert "| cosine | 0.25 [0.15, 0.35] | 0.97 [0.87, 1.07] | 0.5 [0.4, 0.6] |" in text
    # The verdict reads the tracks: the tuned one, then the mis-set ones.
    verdict = text.split("## Should I use GreedyLR?")[1].split("\n## ")[0]
    assert "At the tuned base LR, `greedy_step`" in verdict and "cosine in 50% (2/0/2)" in verdict
    assert "base LR x0.1: it held its own against 1 of 1 rivals" in verdict
    # Without tracks: today's layout.
    del summary["by_lr_scale"]
    assert "## Headline\n" in render_markdown(summary, [], {})


def _subject_track(rates: dict[str, dict[str, float]]) -> dict:
    """A track where each learnlr default (key) has these AGoB rates against each rival."""
    by_subject = {subject: {r: _tally(v) for r, v in rivals.items()}
                  for subject, rivals in rates.items()}
    return {"subject": "greedy_step", "n_pairs": 4, "greedy_vs": by_subject["greedy_step"],
            "greedy_vs_by_subject": by_subject, "effect_sizes": {},
            "cells_per_schedule": {s: 4 for s in by_subject}}


def _two_subjects() -> dict:
    summary = _synthetic({"constant": 1.0, "cosine": 0.5})
    summary["by_lr_scale"] = {
        "0.1": _subject_track({"greedy_step": {"constant": 0.75, "cosine": 0.25},
                               "greedy_eval_budget": {"constant": 0.25, "cosine": 0.25}}),
        "1": _subject_track({"greedy_step": {"constant": 1.0, "cosine": 0.25,
                                             "greedy_eval_budget": 0.0},
                             "greedy_eval_budget": {"constant": 1.0, "cosine": 1.0,
                                                    "greedy_step": 1.0}}),
        "10": _subject_track({"greedy_step": {"constant": 1.0, "cosine": 1.0},
                              "greedy_eval_budget": {"constant": 0.75, "cosine": 0.25}}),
    }
    summary["profile_area_all_tracks"] = {"greedy_step": 0.7, "greedy_eval_budget": 0.9,
                                          "cosine": 0.8}
    return summary


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_verdict_judges_each_learnlr_default_on_each_track():
    verdict = "\n".join(verdict_markdown(_two_subjects()))
    step, budget = verdict.split("### `greedy_eval_budget`")
    assert "### `greedy_step`: `GreedyLR(opt, total_steps=N)`" in step
    assert "`EvalGreedyLR(opt, total_steps=N)`" in budget
    # The profile area is the all-track one, and says so.
    assert ("over all 3 LR tracks (the schedules that ran on each), its final-loss profile area "
            "is 0.70, rank 3 of 3 (best: greedy_eval_budget, 0.90)") in step
    assert "At the tuned base LR, `greedy_step` was as good as or better than (1% band, W/T/L) " \
           "constant in 100% (4/0/0); cosine in 25% (1/0/3)" in step
    assert "Verdict: **use it instead of a constant LR or an untuned schedule**" in step
    assert "rank 1 of 3" in budget and "Verdict: **use it**" in budget
    # One conclusion per mis-set track, by the same rule, for each default.
    assert "1 of 2 rivals" in _line(step, "- base LR x0.1")
    assert "Verdict: **use it instead of a constant LR**; it does not match every fixed " \
           "schedule started from the same mis-set LR." in _line(step, "- base LR x0.1")
    assert "Verdict: **use it**" in _line(step, "- base LR x10")
    assert "Verdict: **not on this evidence**: a constant LR started from the same mis-set LR" \
           in _line(budget, "- base LR x0.1")
    assert "Verdict: **use it instead of a constant LR**" in _line(budget, "- base LR x10")


def test_report_says_what_each_table_pairs_and_which_schedules_run_on_every_track():
    text = render_markdown(_two_subjects(), [], {})
    intro = text.split("## Should I use GreedyLR?")[0]
    assert "The verdict, the per-track headline tables and the effect sizes compare seed means, " \
           "one per (workload, optimizer)" in intro
    assert "the detail sections (tuned track only) pair runs on (workload, optimizer, seed)" \
           in intro
    headline = text.split("## Headline by LR scale")[1].split("\n### ")[0]
    assert "Only constant, step, linear, cosine, wsd, greedy_step" in headline
    assert "appears in the x1 table alone" in headline
    assert "## Performance profiles, tuned track" in text
    # The tuned track's table: both defaults' columns, each against the other.
    assert "| vs schedule | greedy_step AGoB (1% rel) | W/T/L | greedy_eval_budget AGoB (1% rel) " \
           "| W/T/L |" in text
    assert "| greedy_eval_budget | 0% | 0/0/4 | - | - |" in text
    summary = _synthetic({"constant": 1.0, "cosine": 0.5})  # no tracks: everything per seed
    assert "Runs are paired on (workload, optimizer, seed)" in render_markdown(summary, [], {})


def test_report_reads_diverged_runs_as_diverged_not_missing(tmp_path):
    # Least squares with SGD at lr=50 overflows (a real diverged run); 0.05 trains.
    status = {}
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        for schedule, lr in (("greedy_step", 50.0), ("constant", 0.05), ("cosine", 0.05)):
            result = run_cell(CellConfig("toy-linreg", "sgd", schedule, 0, lr, 30, 10),
                              [TOY_PLUGIN])
            store.write_cell(result, suite="tiny", purpose="main")
            status[schedule] = result.summary["status"]
    assert status == {"greedy_step": "diverged", "constant": "ok", "cosine": "ok"}
    summary = write_report(tmp_path, plugins=(TOY_PLUGIN,))
    assert summary["medians"]["toy-linreg/sgd"]["greedy_step"]["final_val_loss"] is None  # JSON
    text = (tmp_path / "report.md").read_text()
    medians = text.split("## Median final validation loss")[1].split("\n## ")[0]
    assert _line(medians, "| greedy_step |").startswith("| greedy_step | diverged")
    effects = text.split("## Effect sizes")[1].split("\n## ")[0]
    assert "| constant | inf [inf, inf] |" in effects


def test_report_keeps_the_bench_commands_of_its_cells(two_suites, tmp_path):
    assert main(["report", str(two_suites), "--suite", "tiny", "--out", str(tmp_path / "t")]) == 0
    commands = [line for line in (tmp_path / "t" / "report.md").read_text().splitlines()
                if line.startswith("Command: ")]
    assert len(commands) == 1 and "--suite tiny" in commands[0]
    assert "--tune shared" in commands[0]
    assert main(["report", str(two_suites), "--out", str(tmp_path / "all")]) == 0
    text = (tmp_path / "all" / "report.md").read_text()
    assert text.index("Command: `learnlr bench --suite tiny") \
        < text.index("Command: `learnlr bench --suite quick")
    # A store from before commands were recorded keeps the previous report's line.
    legacy = tmp_path / "legacy"
    shutil.copytree(two_suites, legacy)
    with closing(sqlite3.connect(legacy / "runs.sqlite")) as conn:
        conn.execute("DROP TABLE commands")
    assert main(["report", str(legacy), "--plugin", TOY_PLUGIN]) == 0
    assert "Command: `learnlr bench --suite quick" in (legacy / "report.md").read_text()
