"""Summary measures on hand-built cells whose outcomes are known."""

from __future__ import annotations

import math

import pytest

from learnlr.bench.summary import compare, steps_to_target, summarize


def _cell(schedule, final, seed=0, curve=None, workload="w", optimizer="sgd"):
    curve = curve or [[10, final]]
    return {
        "config": {"workload": workload, "optimizer": optimizer, "schedule": schedule,
                   "seed": seed},
        "results": {
            "status": "ok" if final is not None else "diverged",
            "final_val_loss": final,
            "best_val_loss": None if final is None else min(v for _, v in curve),
            "final_metric": 0.9,
            "val_loss_at": {"0.1": curve[0][1], "0.5": curve[0][1], "1.0": final},
            "val_curve": curve,
            "wall_time_s": 1.0,
        },
    }


def test_compare_with_both_tie_bands():
    assert compare(1.0, 1.005, "rel_1pct") == 0
    assert compare(1.0, 1.02, "rel_1pct") == 1
    assert compare(1.02, 1.0, "rel_1pct") == -1
    assert compare(1.0, 1.09, "abs_0.1") == 0
    assert compare(1.0, 1.2, "abs_0.1") == 1
    assert compare(math.inf, math.inf, "rel_1pct") == 0
    assert compare(5.0, math.inf, "abs_0.1") == 1
    assert compare(math.inf, 0.1, "abs_0.1") == -1


def test_steps_to_target():
    curve = [[10, 0.9], [20, 0.5], [30, None], [40, 0.4]]
    assert steps_to_target(curve, 0.5) == 20
    assert steps_to_target(curve, 0.45) == 40
    assert steps_to_target(curve, 0.1) is None
    assert steps_to_target(curve, None) is None


def test_summary_counts_wins_ties_losses_per_seed_pair():
    cells = [
        _cell("greedy_step", 1.00, seed=0), _cell("cosine", 1.50, seed=0),   # win
        _cell("greedy_step", 1.00, seed=1), _cell("cosine", 1.005, seed=1),  # tie (1%)
        _cell("greedy_step", 1.30, seed=2), _cell("cosine", 1.00, seed=2),   # loss
        _cell("greedy_step", 1.00, seed=3), _cell("cosine", None, seed=3),   # win (diverged)
        _cell("constant", 2.0, seed=0),                                      # pairs with seed 0
    ]
    s = summarize(cells)
    assert s["cells"] == 9
    assert s["greedy_vs_per_cell"]["cosine"] == {"as_good_or_better": 0.75, "wins": 2, "ties": 1,
                                                 "losses": 1, "n": 4}
    per_cell = s["greedy_vs_per_cell"]["constant"]
    assert per_cell["wins"] == 1 and per_cell["n"] == 1
    # Headline verdicts compare seed means, one per (workload, optimizer): cosine diverged on
    # seed 3, so its mean is +inf and GreedyLR (mean 1.075) wins the single pair.
    assert s["greedy_vs"]["cosine"] == {"as_good_or_better": 1.0, "wins": 1, "ties": 0,
                                        "losses": 0, "n": 1}
    absolute = s["comparisons"]["greedy_step"]["abs_0.1"]["cosine"]
    assert (absolute["wins"], absolute["ties"], absolute["losses"]) == (2, 1, 1)
    # greedy_eval was not run, so it has no comparisons.
    assert "greedy_eval" not in s["comparisons"]


def test_speedup_target_and_profiles():
    # Fixed schedules' best losses 0.5 and 0.3 -> target = median = 0.4.
    cells = [
        _cell("cosine", 0.3, curve=[[10, 0.8], [20, 0.6], [30, 0.4], [40, 0.3]]),
        _cell("constant", 0.5, curve=[[10, 0.9], [20, 0.7], [30, 0.6], [40, 0.5]]),
        _cell("greedy_step", 0.35, curve=[[10, 0.7], [20, 0.4], [30, 0.36], [40, 0.35]]),
    ]
    s = summarize(cells)
    assert s["targets"]["w/sgd"] == pytest.approx(0.4)
    speed = s["speedup_vs_cosine"]["greedy_step"]
    assert speed["median_speedup"] == pytest.approx(30 / 20)
    profiles = s["performance_profiles"]
    assert profiles["steps_to_target"]["greedy_step"]["area"] == pytest.approx(1.0)
    # cosine's ratio is 1.5: rho(tau) = 0 for tau < 1.5, 1 after.
    cosine_area = profiles["steps_to_target"]["cosine"]["area"]
    assert 0.8 < cosine_area < 0.85
    # constant never reaches the target: its steps profile is 0 everywhere.
    assert profiles["steps_to_target"]["constant"]["area"] == 0.0
    assert profiles["final_loss"]["cosine"]["area"] == pytest.approx(1.0)


def test_summary_is_deterministic_in_its_input_order():
    cells = [_cell("greedy_step", 1.0, seed=s) for s in range(3)] + [
        _cell("cosine", 1.0 + 0.1 * s, seed=s) for s in range(3)]
    assert summarize(cells) == summarize(list(reversed(cells)))


def test_runs_with_different_budgets_are_never_paired():
    short = _cell("greedy_step", 1.0)
    short["config"]["budget_steps"] = 100
    long_ = _cell("cosine", 2.0)
    long_["config"]["budget_steps"] = 500
    long_greedy = _cell("greedy_step", 3.0)
    long_greedy["config"]["budget_steps"] = 500
    s = summarize([short, long_, long_greedy])
    assert s["greedy_vs"]["cosine"]["losses"] == 1 and s["greedy_vs"]["cosine"]["n"] == 1
    assert s["greedy_vs_per_cell"]["cosine"]["n"] == 1
    assert set(s["medians"]) == {"w@100/sgd", "w@500/sgd"}


def _track_cell(schedule, final, scale, seed=0, workload="w"):
    cell = _cell(schedule, final, seed=seed, workload=workload)
    cell["config"]["lr_scale"] = scale
    return cell


def test_lr_tracks_seed_means_effect_sizes_and_lr_free_peers():
    cells = []
    for seed, noise in enumerate((0.0, 0.02)):
        for w in ("a", "b"):
            # Tuned track: greedy 1.0 vs cosine 1.1; x10: greedy 1.2 vs cosine diverged.
            cells += [_track_cell("greedy_step", 1.0 + noise, 1.0, seed, w),
                      _track_cell("cosine", 1.1 + noise, 1.0, seed, w),
                      _track_cell("greedy_step", 1.2 + noise, 10.0, seed, w),
                      _track_cell("cosine", None, 10.0, seed, w),
                      # Prodigy ignores the base LR: one run, a rival on every track.
                      _track_cell("prodigy", 0.9 + noise, 1.0, seed, w),
                      # onecycle runs on the tuned track only.
                      _track_cell("onecycle", 0.8 + noise, 1.0, seed, w)]
    s = summarize(cells)
    assert set(s["by_lr_scale"]) == {"1", "10"}
    tuned, large = s["by_lr_scale"]["1"], s["by_lr_scale"]["10"]
    assert tuned["n_pairs"] == large["n_pairs"] == 2
    assert tuned["greedy_vs"]["cosine"]["wins"] == 2
    assert tuned["greedy_vs"]["prodigy"]["losses"] == 2
    # A schedule run on the tuned track only is not scored by the all-track profile.
    assert "onecycle" not in s["profile_area_all_tracks"]
    assert "onecycle" in tuned["greedy_vs"]
    assert large["greedy_vs"]["prodigy"]["n"] == 2  # the peer's single run counts here too
    effect = tuned["effect_sizes"]["cosine"]
    assert effect["median_ratio"] == pytest.approx(1.01 / 1.11)
    assert effect["ci95"][0] <= effect["median_ratio"] <= effect["ci95"][1]
    # Ratio to the best schedule of each pair (prodigy is best everywhere).
    assert large["ratio_to_best"]["greedy_step"]["median"] == pytest.approx(1.21 / 0.91)
    assert large["ratio_to_best"]["cosine"]["median"] == math.inf
    assert large["ratio_to_best"]["prodigy"]["median"] == 1.0
    # The all-track profile: prodigy is best in the x10 groups, onecycle in the tuned ones.
    assert 0.5 < s["profile_area_all_tracks"]["prodigy"] < 1.0
    assert s["profile_area_all_tracks"]["cosine"] < s["profile_area_all_tracks"]["greedy_step"]


def test_seed_means_average_every_schedule_over_the_same_seeds():
    from learnlr.bench.summary import seed_means

    cells = [_cell("greedy_step", 1.0, seed=0), _cell("greedy_step", 3.0, seed=1),
             _cell("cosine", 2.0, seed=0)]  # cosine's seed 1 is missing (a partial run)
    means = seed_means(cells)[("w", 0, "sgd")]
    assert means == {"greedy_step": 1.0, "cosine": 2.0}


def test_each_learnlr_default_gets_its_own_verdicts_per_track():
    cells = []
    for w in ("a", "b"):
        for scale, budget_loss in ((1.0, 0.9), (0.1, 1.3)):
            cells += [_track_cell("greedy_step", 1.0, scale, workload=w),
                      _track_cell("greedy_eval_budget", budget_loss, scale, workload=w),
                      _track_cell("cosine", 1.1, scale, workload=w)]
    s = summarize(cells)
    for key, track in s["by_lr_scale"].items():
        by_subject = track["greedy_vs_by_subject"]
        assert set(by_subject) == {"greedy_step", "greedy_eval_budget"}
        # the existing key keeps greedy_step's verdicts
        assert by_subject["greedy_step"] == track["greedy_vs"]
        assert track["cells_per_schedule"] == {"cosine": 2, "greedy_eval_budget": 2,
                                              "greedy_step": 2}
        budget = by_subject["greedy_eval_budget"]
        assert set(budget) == {"greedy_step", "cosine"} and budget["cosine"]["n"] == 2
        # tuned: 0.9 beats cosine's 1.1; x0.1: 1.3 loses to it
        assert budget["cosine"]["wins"] == (2 if key == "1" else 0)
    assert s["greedy_vs"] == s["by_lr_scale"]["1"]["greedy_vs_by_subject"]["greedy_step"]
