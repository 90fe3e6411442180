"""Measures across cells: GreedyLR's as-good-or-better rates, speedups and performance profiles.

Definitions (stated in every report):

* **Pairing**: GreedyLR and a rival are compared on the same (workload, optimizer column, seed),
  on the final validation loss (a diverged run counts as +inf; two diverged runs tie).
* **Tie bands**: ``rel_1pct``: ``|g - b| <= 0.01 * |b|``; ``abs_0.1``: ``|g - b| <= 0.1`` (the
  paper's band). GreedyLR is *as good or better* when it wins or ties.
* **Target** for steps-to-target, per (workload, optimizer): the median best validation loss of
  the fixed schedules (constant, step, ... onecycle, all at the tuned base LR), over seeds.
* **Steps to target**: the first evaluation step whose val loss <= target (None if never).
* **Performance profiles** (AlgoPerf style): in each group (workload, optimizer, seed), a
  schedule's ratio is its steps-to-target over the best schedule's (inf if it never gets
  there); rho(tau) is the fraction of groups with ratio <= tau, and the area is the mean of
  rho over tau in [1, r_max = 4] (1 = always the fastest). The same is done for the final val
  loss ratio.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

GREEDY_SCHEDULES = ("greedy_step", "greedy_eval")
SUBJECT = "greedy_step"
"""learnlr's default, the schedule every verdict is about unless a caller names another."""
SUBJECTS = ("greedy_step", "greedy_eval_budget")
"""learnlr's defaults (README): ``GreedyLR(total_steps)`` per step when you do not evaluate,
``EvalGreedyLR(total_steps)`` when you do; each present gets its own verdict
(``greedy_vs_by_subject``)."""


def schedule_kinds() -> tuple[frozenset[str], frozenset[str]]:
    """(fixed schedules, LR-free peers) from the registry, imported only when a summary is made
    without them, so importing this module stays torch-free."""
    from learnlr.bench.schedules import FIXED_SCHEDULES, SCHEDULES

    lr_free = frozenset(n for n, spec in SCHEDULES.items() if not spec.uses_base_lr)
    return frozenset(FIXED_SCHEDULES), lr_free
TIE_BANDS: dict[str, tuple[str, float]] = {"rel_1pct": ("rel", 0.01), "abs_0.1": ("abs", 0.1)}
R_MAX = 4.0
_TAU_GRID = [1.0 + i * (R_MAX - 1.0) / 60 for i in range(61)]

Key = tuple[str, str, int]  # (workload, optimizer, seed)


def _loss(value: float | None) -> float:
    return math.inf if value is None else float(value)


def compare(greedy: float, rival: float, band: str) -> int:
    """+1 GreedyLR better, 0 tie, -1 worse, for final losses (inf = diverged) and a tie band."""
    kind, width = TIE_BANDS[band]
    if math.isinf(greedy) and math.isinf(rival):
        return 0
    if math.isinf(greedy) or math.isinf(rival):
        return 1 if math.isinf(rival) else -1
    tolerance = width * abs(rival) if kind == "rel" else width
    if abs(greedy - rival) <= tolerance:
        return 0
    return 1 if greedy < rival else -1


def _tally(outcomes: list[int]) -> dict[str, Any]:
    wins = sum(1 for o in outcomes if o > 0)
    ties = sum(1 for o in outcomes if o == 0)
    losses = sum(1 for o in outcomes if o < 0)
    n = len(outcomes)
    return {
        "as_good_or_better": (wins + ties) / n if n else None,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "n": n,
    }


def steps_to_target(val_curve: Iterable[Iterable[Any]], target: float | None) -> int | None:
    """First evaluation step whose val loss is <= target, or None."""
    if target is None:
        return None
    for step, loss in val_curve:
        if loss is not None and loss <= target:
            return int(step)
    return None


def _profile(ratios: list[float]) -> dict[str, Any]:
    rho = [sum(1 for r in ratios if r <= tau) / len(ratios) for tau in _TAU_GRID]
    return {"area": sum(rho) / len(rho), "n_groups": len(ratios), "tau": _TAU_GRID, "rho": rho}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(
    cells: Iterable[Mapping[str, Any]],
    subject: str = SUBJECT,
    kinds: tuple[frozenset[str], frozenset[str]] | None = None,
) -> dict[str, Any]:
    """Summary of finished main cells; each item has ``config`` and ``results`` dicts.

    The per-cell detail (comparisons, stages, profiles, ...) is over the tuned LR track; the
    headline verdicts (``greedy_vs``, ``by_lr_scale``) compare seed means of ``subject``.
    ``kinds`` is (fixed schedules, LR-free peers); default: :func:`schedule_kinds`.
    Deterministic in its input (wall times live only under ``"timing"``).
    """
    cells = list(cells)
    fixed, lr_free = kinds or schedule_kinds()
    tracks = summarize_tracks(cells, subject, lr_free)
    tuned = split_tracks(cells, lr_free).get("1", [])
    detail = _summarize_cells(tuned, fixed)
    detail["cells"] = len(cells)
    detail["greedy_vs_per_cell"] = detail.pop("greedy_vs")
    return {**detail, **tracks, "greedy_vs": tracks["by_lr_scale"].get("1", {}).get("greedy_vs", {})}


def _scale_key(scale: float) -> str:
    return f"{float(scale):g}"


def split_tracks(
    cells: Iterable[Mapping[str, Any]], lr_free: frozenset[str]
) -> dict[str, list[Mapping[str, Any]]]:
    """Cells per LR track (``"0.1"``, ``"1"``, ``"10"``); LR-free peers join every track."""
    tracks: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    free = []
    for cell in cells:
        if cell["config"]["schedule"] in lr_free:
            free.append(cell)
        else:
            tracks[_scale_key(cell["config"].get("lr_scale", 1.0))].append(cell)
    if free and not tracks:
        tracks["1"] = []
    return {k: v + free for k, v in tracks.items()}


Pair = tuple[str, int, str]  # (workload, budget, optimizer)


def seed_means(cells: Iterable[Mapping[str, Any]]) -> dict[Pair, dict[str, float]]:
    """Mean final val loss over seeds per (workload, budget, optimizer) and schedule, over the
    seeds every schedule of the pair has.

    A diverged seed makes the mean +inf: a schedule that sometimes diverges is not "good on
    average".
    """
    losses: dict[Pair, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for cell in cells:
        c = cell["config"]
        pair = (c["workload"], int(c.get("budget_steps", 0)), c["optimizer"])
        losses[pair][c["schedule"]][int(c["seed"])] = _loss(cell["results"]["final_val_loss"])
    out = {}
    for pair, by_s in losses.items():
        # Average every schedule over the same seeds (a partial run may lack some cells).
        seeds = set.intersection(*(set(v) for v in by_s.values()))
        out[pair] = {s: _mean_or_inf([v[k] for k in sorted(seeds)]) for s, v in by_s.items()}
    return out


def _mean_or_inf(values: list[float]) -> float:
    if not values:
        return math.inf
    return statistics.fmean(values) if all(map(math.isfinite, values)) else math.inf


def _ratio(a: float, b: float) -> float:
    """a / b for losses >= 0 with inf = diverged (both diverged: 1)."""
    if math.isinf(a) and math.isinf(b):
        return 1.0
    if math.isinf(a) or b <= 0:
        return math.inf if a != b else 1.0
    return a / b


def verdicts(means: Mapping[Pair, Mapping[str, float]], subject: str, rivals: Iterable[str],
             band: str = "rel_1pct") -> dict[str, Any]:
    """As-good-or-better tallies of ``subject`` against each rival, one outcome per pair."""
    out = {}
    for rival in rivals:
        outcomes = [compare(m[subject], m[rival], band) for m in means.values()
                    if subject in m and rival in m]
        if outcomes:
            out[rival] = _tally(outcomes)
    return out


def effect_size(means: Mapping[Pair, Mapping[str, float]], subject: str, rival: str,
                n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Median of subject/rival seed-mean final-loss ratios, with a 95 % bootstrap interval."""
    ratios = [_ratio(m[subject], m[rival]) for m in means.values() if subject in m and rival in m]
    if not ratios:
        return {"median_ratio": None, "ci95": [None, None], "n": 0}
    rng = random.Random(seed)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(n_boot))
    return {"median_ratio": statistics.median(ratios),
            "ci95": [boot[int(0.025 * n_boot)], boot[int(0.975 * n_boot) - 1]], "n": len(ratios)}


def ratio_to_best(means: Mapping[Pair, Mapping[str, float]], schedule: str) -> list[float]:
    """Per pair: the schedule's seed-mean final loss over the best schedule's."""
    return [_ratio(m[schedule], min(m.values())) for m in means.values() if schedule in m]


def summarize_tracks(
    cells: Iterable[Mapping[str, Any]], subject: str = SUBJECT, lr_free: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Seed-mean verdicts, effect sizes and ratios to the best schedule, per LR track, plus the
    performance profile (final loss) over every track, for the schedules that ran on all of
    them (LR-free peers count in every track)."""
    by_scale: dict[str, Any] = {}
    loss_ratios: dict[str, list[float]] = defaultdict(list)
    present: list[set[str]] = []
    for key, track in sorted(split_tracks(cells, lr_free).items(), key=lambda kv: float(kv[0])):
        means = seed_means(track)
        schedules = sorted({s for m in means.values() for s in m})
        present.append(set(schedules))
        by_scale[key] = _track_summary(means, schedules, subject)
        by_scale[key]["cells_per_schedule"] = dict(
            sorted(Counter(c["config"]["schedule"] for c in track).items()))
        table: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
        for cell in track:
            c = cell["config"]
            table[(c["workload"], c.get("budget_steps"), c["optimizer"], c["seed"])][
                c["schedule"]] = _loss(cell["results"]["final_val_loss"])
        for group in table.values():
            best = min(group.values())
            if math.isfinite(best):
                for s, value in group.items():
                    loss_ratios[s].append(_ratio(value, best))
    # Only schedules that ran on every track: one run on the tuned track alone would be scored
    # on the easy groups only.
    everywhere = set.intersection(*present) if present else set()
    profile = {s: _profile(v)["area"] for s, v in sorted(loss_ratios.items()) if s in everywhere}
    return {"by_lr_scale": by_scale, "profile_area_all_tracks": profile}


def _track_summary(means: Mapping[Pair, Mapping[str, float]], schedules: list[str],
                   subject: str) -> dict[str, Any]:
    """One LR track's seed-mean measures: ``subject``'s verdicts and effect sizes, each of
    learnlr's defaults' verdicts, and every schedule's ratio to the best."""
    rivals = [s for s in schedules if s != subject]
    to_best = {s: ratio_to_best(means, s) for s in schedules}
    return {
        "subject": subject,
        "n_pairs": len(means),
        "greedy_vs": verdicts(means, subject, rivals) if subject in schedules else {},
        "greedy_vs_by_subject": {
            s: verdicts(means, s, [r for r in schedules if r != s])
            for s in dict.fromkeys((subject, *SUBJECTS)) if s in schedules},
        "effect_sizes": {r: effect_size(means, subject, r) for r in rivals}
        if subject in schedules else {},
        "ratio_to_best": {s: {"median": _median(v), "n": len(v)} for s, v in to_best.items()},
    }


def _summarize_cells(cells: list[Mapping[str, Any]], fixed: frozenset[str]) -> dict[str, Any]:
    """Per-cell detail over one LR track (each rival paired on the same seed)."""
    # One folder may hold runs of several suites (budgets): never pair runs of different
    # budgets, and name such workloads "name@budget" in the summary.
    budgets: dict[str, set[int]] = defaultdict(set)
    for cell in cells:
        budgets[cell["config"]["workload"]].add(int(cell["config"].get("budget_steps", 0)))
    table: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
    for cell in cells:
        c, r = cell["config"], cell["results"]
        workload = c["workload"]
        if len(budgets[workload]) > 1:
            workload = f"{workload}@{c['budget_steps']}"
        table[(workload, c["optimizer"], int(c["seed"]))][c["schedule"]] = r
    n_cells = sum(len(v) for v in table.values())
    schedules = sorted({s for group in table.values() for s in group})

    # Targets per (workload, optimizer) from the fixed schedules' best val losses.
    fixed_best: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (w, o, _), group in table.items():
        for s, r in group.items():
            if s in fixed and r["best_val_loss"] is not None:
                fixed_best[(w, o)].append(r["best_val_loss"])
    targets = {wo: statistics.median(v) for wo, v in fixed_best.items()}
    steps: dict[Key, dict[str, int | None]] = {
        key: {s: steps_to_target(r["val_curve"], targets.get(key[:2])) for s, r in group.items()}
        for key, group in table.items()
    }

    comparisons: dict[str, Any] = {}
    stage_rates: dict[str, Any] = {}
    per_workload: dict[str, Any] = {}
    speedups: dict[str, Any] = {}
    for greedy in GREEDY_SCHEDULES:
        if greedy not in schedules:
            continue
        by_band: dict[str, dict[str, Any]] = {}
        for band in TIE_BANDS:
            by_rival: dict[str, Any] = {}
            for rival in schedules:
                if rival == greedy:
                    continue
                outcomes = [
                    compare(_loss(g[greedy]["final_val_loss"]), _loss(g[rival]["final_val_loss"]),
                            band)
                    for g in table.values() if greedy in g and rival in g
                ]
                if outcomes:
                    by_rival[rival] = _tally(outcomes)
            by_band[band] = by_rival
        comparisons[greedy] = by_band

        # Paper-style stages: at 10 / 50 / 100 % of the budget, against all fixed schedules.
        stage_rates[greedy] = {}
        for frac in ("0.1", "0.5", "1.0"):
            outcomes = [
                compare(_loss(g[greedy]["val_loss_at"][frac]), _loss(g[s]["val_loss_at"][frac]),
                        "rel_1pct")
                for g in table.values() if greedy in g
                for s in fixed if s in g
            ]
            stage_rates[greedy][frac] = _tally(outcomes)

        # Where does it fall short? Rate against the fixed schedules, per workload.
        by_workload: dict[str, list[int]] = defaultdict(list)
        for (w, _, _), g in table.items():
            if greedy in g:
                by_workload[w].extend(
                    compare(_loss(g[greedy]["final_val_loss"]), _loss(g[s]["final_val_loss"]),
                            "rel_1pct")
                    for s in fixed if s in g
                )
        per_workload[greedy] = {w: _tally(v) for w, v in sorted(by_workload.items())}

        ratios, greedy_only, cosine_only, neither = [], 0, 0, 0
        for key, g in table.items():
            if greedy not in g or "cosine" not in g:
                continue
            tg, tc = steps[key][greedy], steps[key]["cosine"]
            if tg is not None and tc is not None:
                ratios.append(tc / tg)
            elif tg is not None:
                greedy_only += 1
            elif tc is not None:
                cosine_only += 1
            else:
                neither += 1
        speedups[greedy] = {
            "median_speedup": _median(ratios),
            "n_both_reached": len(ratios),
            "only_greedy_reached": greedy_only,
            "only_cosine_reached": cosine_only,
            "neither_reached": neither,
        }

    profiles: dict[str, dict[str, Any]] = {"steps_to_target": {}, "final_loss": {}}
    step_ratios: dict[str, list[float]] = defaultdict(list)
    loss_ratios: dict[str, list[float]] = defaultdict(list)
    for key, g in table.items():
        reached = [t for t in steps[key].values() if t is not None]
        if reached:
            best_t = max(min(reached), 1)
            for s, t in steps[key].items():
                step_ratios[s].append(math.inf if t is None else t / best_t)
        losses = {s: _loss(r["final_val_loss"]) for s, r in g.items()}
        best_l = min(losses.values())
        if math.isfinite(best_l):
            for s, value in losses.items():
                # Losses are >= 0 here; guard a zero best loss from dividing by zero.
                loss_ratios[s].append(value / best_l if best_l > 0 else
                                      (1.0 if value == best_l else math.inf))
    for s in schedules:
        if step_ratios[s]:
            profiles["steps_to_target"][s] = _profile(step_ratios[s])
        if loss_ratios[s]:
            profiles["final_loss"][s] = _profile(loss_ratios[s])

    medians: dict[str, Any] = defaultdict(dict)
    timing: dict[str, dict[str, float | None]] = {"wall_s": {}, "cpu_s": {}}
    for s in schedules:
        timing["wall_s"][s] = _median([g[s]["wall_time_s"] for g in table.values() if s in g])
        timing["cpu_s"][s] = _median(
            [g[s]["cpu_time_s"] for g in table.values() if s in g and "cpu_time_s" in g[s]])
    for w, o in sorted({k[:2] for k in table}):
        for s in schedules:
            rs = [g[s] for k, g in table.items() if k[:2] == (w, o) and s in g]
            if rs:
                medians[f"{w}/{o}"][s] = {
                    "final_val_loss": _median([_loss(r["final_val_loss"]) for r in rs]),
                    "final_metric": _median(
                        [r["final_metric"] for r in rs if r["final_metric"] is not None]),
                    "diverged": sum(1 for r in rs if r["status"] != "ok"),
                    "n": len(rs),
                }

    primary = comparisons.get("greedy_step", {}).get("rel_1pct", {})
    return {
        "cells": n_cells,
        "tie_bands": {k: f"{kind} {width}" for k, (kind, width) in TIE_BANDS.items()},
        "greedy_vs": primary,
        "comparisons": comparisons,
        "stage_rates": stage_rates,
        "per_workload": per_workload,
        "speedup_vs_cosine": speedups,
        "targets": {f"{w}/{o}": t for (w, o), t in sorted(targets.items())},
        "performance_profiles": profiles,
        "medians": dict(medians),
        "timing": timing,
    }


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by None so the summary is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
