"""``report.md``, ``summary.json`` and PNG plots from an experiment store.

report.md opens with a verdict ("should I use it?") written from the summary's numbers by a
stated rule, then the headline table(s), then the detail. Cells whose schedule never changed
the LR (read from the stored trajectory) are flagged.

Example::

    summary = write_report(Path("out"))   # reads out/runs.sqlite, writes the report files
    summary = write_report(Path("out"), out_dir=Path("tiny-only"), only=ReportFilter("tiny"))
    print(headline_markdown(summary))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnlr.bench.plots import PLOT_FILENAMES, write_plots
from learnlr.bench.schedules import FIXED_SCHEDULES, SCHEDULE_ALIASES, SCHEDULES
from learnlr.bench.store import STORE_FILENAME, ExperimentStore, StoredCell
from learnlr.bench.summary import GREEDY_SCHEDULES, R_MAX, TIE_BANDS, json_safe, summarize

SUMMARY_FILENAME = "summary.json"
REPORT_FILENAME = "report.md"
GREEDY_FAMILY = frozenset((*GREEDY_SCHEDULES, *SCHEDULE_ALIASES["greedy"]))
"""learnlr's own GreedyLR variants: shown in the tables, but not rivals in the verdict."""
HOLDS_ITS_OWN = 0.5
"""The verdict's rule: GreedyLR "holds its own" against a rival when it is as good or better
(1% band) in at least this fraction of the paired runs."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "diverged"
    return f"{value:.{digits}g}"


def _wtl(entry: dict[str, Any] | None) -> str:
    return "-" if not entry else f"{entry['wins']}/{entry['ties']}/{entry['losses']}"


def headline_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the headline table: one per rival schedule, GreedyLR's rates against it."""
    comparisons = summary["comparisons"]
    profiles = summary["performance_profiles"]["steps_to_target"]
    rivals = [s for s in SCHEDULES if s not in GREEDY_SCHEDULES and any(
        s in comparisons.get(g, {}).get("rel_1pct", {}) for g in GREEDY_SCHEDULES)]
    rows = []
    for rival in rivals:
        row = [rival, ", ".join(SCHEDULES[rival].optimizers) if SCHEDULES[rival].kind == "peer"
               else "all"]
        for greedy in GREEDY_SCHEDULES:
            rel = comparisons.get(greedy, {}).get("rel_1pct", {}).get(rival)
            ab = comparisons.get(greedy, {}).get("abs_0.1", {}).get(rival)
            row += [_pct(rel and rel["as_good_or_better"]), _wtl(rel),
                    _pct(ab and ab["as_good_or_better"])]
        row.append(_num(profiles.get(rival, {}).get("area"), 3))
        rows.append(row)
    return rows


# Short headers for the terminal; report.md uses the long ones.
HEADLINE_COLUMNS_SHORT = [
    "vs", "cols", "step 1%", "W/T/L", "step 0.1", "eval 1%", "W/T/L", "eval 0.1", "area",
]
HEADLINE_COLUMNS = [
    "vs schedule", "columns",
    "greedy_step AGoB (1% rel)", "W/T/L", "AGoB (0.1 abs)",
    "greedy_eval AGoB (1% rel)", "W/T/L", "AGoB (0.1 abs)",
    "rival's profile area",
]


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def headline_markdown(summary: dict[str, Any]) -> str:
    """The headline table (GreedyLR as-good-or-better rates) as markdown."""
    return _markdown_table(HEADLINE_COLUMNS, headline_rows(summary))


def _workload_provenance(names: set[str], plugins: Sequence[str]) -> dict[str, str]:
    from learnlr.bench.workloads import load_workloads

    try:
        registry = load_workloads(plugins)
    except ValueError:
        return {}
    return {n: getattr(registry[n], "provenance", "?") for n in sorted(names) if n in registry}


def _rival_phrase(rival: str, entry: dict[str, Any]) -> str:
    return f"{rival} in {_pct(entry['as_good_or_better'])} ({_wtl(entry)})"


def _held(rivals: dict[str, Any]) -> list[str]:
    return [r for r, e in rivals.items() if e["as_good_or_better"] >= HOLDS_ITS_OWN]


def _judge(name: str, rivals: dict[str, Any], areas: dict[str, float], n_flat: int,
           n_cells: int) -> tuple[str, str]:
    """(the numbers sentence, the conclusion) for ``name`` against ``rivals`` (AGoB tallies);
    ``areas``: final-loss profile area per schedule; ``n_flat`` of its ``n_cells`` cells never
    changed the LR."""
    fixed = {r: e for r, e in rivals.items() if r in FIXED_SCHEDULES}
    held = _held(fixed)
    parts = [f"`{name}` was as good as or better than (1% band, W/T/L) "
             + "; ".join(_rival_phrase(r, rivals[r]) for r in ("constant", "cosine")
                         if r in rivals)]
    if fixed:
        weakest = min(fixed, key=lambda r: (fixed[r]["as_good_or_better"], r))
        parts.append(f"it holds its own against {len(held)} of {len(fixed)} tuned fixed "
                     f"schedules, the weakest match being {_rival_phrase(weakest, fixed[weakest])}")
    if name in areas:
        ranked = sorted(areas, key=lambda s: (-areas[s], s))
        parts.append(f"its final-loss profile area is {areas[name]:.2f}, rank "
                     f"{ranked.index(name) + 1} of {len(ranked)} (best: {ranked[0]}, "
                     f"{areas[ranked[0]]:.2f})")
    if n_flat:
        parts.append(f"it never changed the LR in {n_flat} of its {n_cells} cells")
    beats_constant = rivals.get("constant", {}).get("as_good_or_better") or 0.0
    if n_flat * 2 > n_cells:
        conclusion = ("**no evidence either way**: it mostly never moved the LR, so its results "
                      "are the base LR's")
    elif rivals and len(_held(rivals)) == len(rivals):
        conclusion = "**use it**: it held its own against every rival here"
    elif beats_constant >= HOLDS_ITS_OWN and len(held) * 2 >= len(fixed):
        conclusion = ("**use it instead of a constant LR or an untuned schedule**; it does not "
                      "match every tuned schedule")
    elif beats_constant >= HOLDS_ITS_OWN:
        conclusion = ("**only as a replacement for a constant LR**: most tuned fixed schedules "
                      "did better")
    else:
        conclusion = "**not on this evidence**: a constant LR was as good or better more often"
    return "; ".join(parts) + ".", conclusion


def _rule(summary: dict[str, Any], pairing: str) -> list[str]:
    return [f"Rule: GreedyLR holds its own against a rival when it is as good or better in at "
            f"least {HOLDS_ITS_OWN:.0%} of the {pairing} (1% band). Over {summary['cells']} "
            "cells; read the tables below for where it falls short.", ""]


def _count(cells: Sequence[StoredCell], schedule: str) -> int:
    return sum(1 for c in cells if c.config["schedule"] == schedule
               and float(c.config.get("lr_scale", 1.0)) == 1.0)


def verdict_markdown(summary: dict[str, Any], flat: Sequence[StoredCell] = (),
                     n_cells: dict[str, int] | None = None) -> list[str]:
    """The "should I use it?" paragraph, from the summary's numbers by a stated rule.

    ``flat``: the cells whose LR never changed; ``n_cells``: cells per schedule on the tuned
    track (default: the summary's medians' counts).
    """
    out = ["## Should I use GreedyLR?", ""]
    if n_cells is None:
        n_cells = {}
        for by_schedule in summary["medians"].values():
            for s, m in by_schedule.items():
                n_cells[s] = n_cells.get(s, 0) + m["n"]
    if summary.get("by_lr_scale"):
        return out + _tracks_verdict(summary, flat, n_cells)
    greedies = [g for g in GREEDY_SCHEDULES if summary["comparisons"].get(g, {}).get("rel_1pct")]
    if not greedies:
        return [*out, "No GreedyLR cells with a paired rival in this selection.", ""]
    areas = {s: p["area"] for s, p in summary["performance_profiles"]["final_loss"].items()}
    for greedy in greedies:
        rivals = {r: e for r, e in summary["comparisons"][greedy]["rel_1pct"].items()
                  if r not in GREEDY_FAMILY and e["n"]}
        numbers, conclusion = _judge(greedy, rivals, areas, _count(flat, greedy),
                                     n_cells.get(greedy, 0))
        out += [f"{numbers} Verdict for `{greedy}`: {conclusion}.", ""]
    return out + _rule(summary, "paired runs (same workload, optimizer, seed)")


def _tracks_verdict(summary: dict[str, Any], flat: Sequence[StoredCell],
                    n_cells: dict[str, int]) -> list[str]:
    tracks = summary["by_lr_scale"]
    tuned = tracks.get("1") or next(iter(tracks.values()))
    subject = tuned.get("subject", "greedy_step")
    rivals = {r: e for r, e in tuned["greedy_vs"].items() if r not in GREEDY_FAMILY and e["n"]}
    if not rivals:
        return ["No GreedyLR cells with a paired rival in this selection.", ""]
    numbers, conclusion = _judge(subject, rivals, summary.get("profile_area_all_tracks", {}),
                                 _count(flat, subject), n_cells.get(subject, 0))
    out = [f"At the tuned base LR, {numbers} Verdict: {conclusion}.", ""]
    mis_set = []
    for scale, track in sorted(tracks.items(), key=lambda kv: float(kv[0])):
        others = {r: e for r, e in track["greedy_vs"].items()
                  if r not in GREEDY_FAMILY and e["n"]}
        if scale != "1" and others:
            mis_set.append(f"{_scale_label(scale)}: it held its own against "
                           f"{len(_held(others))} of {len(others)} rivals (as good or better "
                           "than " + "; ".join(_rival_phrase(r, others[r]) for r in
                                              ("constant", "cosine") if r in others) + ")")
    if mis_set:
        out += ["With a mis-set base LR, " + "; ".join(mis_set) + ".", ""]
    return out + _rule(summary, "(workload, optimizer) pairs, seed means")


def _scale_label(scale: str) -> str:
    return f"base LR x{scale}"


def _tracks_markdown(summary: dict[str, Any]) -> list[str]:
    """One headline table per LR-scale track (``by_lr_scale``), then the effect sizes."""
    tracks = sorted(summary["by_lr_scale"].items(), key=lambda kv: float(kv[0]))
    out = ["## Headline by LR scale", "",
           "Each track starts every schedule from the tuned base LR times the scale (x0.1, x10: "
           "a mis-set LR); peers that set their own step size count in every track. GreedyLR "
           "against each rival on the seed-mean final val loss per (workload, optimizer), "
           "1% band.", ""]
    for scale, track in tracks:
        rows = [[rival, _pct(e["as_good_or_better"]), _wtl(e), str(e["n"])]
                for rival, e in track.get("greedy_vs", {}).items()]
        subject = track.get("subject", "greedy_step")
        n = track.get("n_pairs", 0)
        out += [f"### {_scale_label(scale)} ({subject}, {n} pair{'' if n == 1 else 's'})", "",
                _markdown_table(["vs schedule", "AGoB (1% rel)", "W/T/L", "pairs"], rows), ""]
    rivals = list(dict.fromkeys(r for _, t in tracks for r in t.get("effect_sizes", {})))
    if rivals:
        out += ["## Effect sizes", "",
                "Median over (workload, optimizer) pairs of GreedyLR's seed-mean final val loss "
                "divided by the rival's (< 1: GreedyLR lower), with a 95% bootstrap interval.", ""]
        rows = [[r, *(_effect(t.get("effect_sizes", {}).get(r)) for _, t in tracks)]
                for r in rivals]
        out += [_markdown_table(["vs schedule", *(_scale_label(s) for s, _ in tracks)], rows), ""]
    return out


def _effect(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("median_ratio") is None:
        return "-"
    low, high = entry.get("ci95", [None, None])
    return f"{_num(entry['median_ratio'], 3)} [{_num(low, 3)}, {_num(high, 3)}]"


def _intro(summary: dict[str, Any], command: str | None) -> list[str]:
    out = ["# learnlr bench report", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    return out + [
        f"{summary['cells']} cells. GreedyLR's **as-good-or-better (AGoB)** rate against each "
        "schedule, paired on (workload, optimizer, seed), final validation loss; tie bands "
        "1% relative and the paper's 0.1 absolute. W/T/L = wins/ties/losses (1% band). "
        "Peers replace the optimizer and are compared only in the columns listed.", ""]


def _flat_markdown(flat: Sequence[StoredCell]) -> list[str]:
    out = ["## Cells where the schedule never changed the LR", ""]
    if not flat:
        return [*out, "None: every schedule other than `constant` moved the LR.", ""]
    groups: dict[tuple[str, str, str, float], list[str]] = {}
    for cell in flat:
        c = cell.config
        key = (c["schedule"], c["workload"], c["optimizer"], float(c.get("lr_scale", 1.0)))
        groups.setdefault(key, []).append(str(c["seed"]))
    rows = [[s, w, o, f"x{scale:g}", ", ".join(seeds)]
            for (s, w, o, scale), seeds in sorted(groups.items())]
    return [*out, f"{len(flat)} cells ran at one LR throughout (read from the stored "
            "trajectory): their result is the base LR's, not the schedule's.", "",
            _markdown_table(["schedule", "workload", "optimizer", "LR scale", "seeds"], rows), ""]


def _speed_and_stages(summary: dict[str, Any]) -> list[str]:
    out = ["## Steps to target, GreedyLR vs cosine", "",
           "Target per (workload, optimizer) = median best val loss of the tuned fixed schedules. "
           "Speedup = cosine's steps / GreedyLR's steps (>1: GreedyLR faster), over pairs where "
           "both reach it.", ""]
    rows = [[g, _num(s["median_speedup"], 3), str(s["n_both_reached"]),
             str(s["only_greedy_reached"]), str(s["only_cosine_reached"]), str(s["neither_reached"])]
            for g, s in summary["speedup_vs_cosine"].items()]
    out += [_markdown_table(["schedule", "median speedup", "both reached", "only greedy",
                             "only cosine", "neither"], rows), ""]
    out += ["## By stage of training (vs all fixed schedules, 1% band)", ""]
    rows = [[g, *(_pct(v[f]["as_good_or_better"]) for f in ("0.1", "0.5", "1.0"))]
            for g, v in summary["stage_rates"].items()]
    out += [_markdown_table(["schedule", "10%", "50%", "100%"], rows), ""]
    out += ["## By workload (vs all fixed schedules, 1% band)", ""]
    rows = [[g, w, _pct(t["as_good_or_better"]), _wtl(t)]
            for g, per in summary["per_workload"].items() for w, t in per.items()]
    return out + [_markdown_table(["schedule", "workload", "AGoB", "W/T/L"], rows), ""]


def _profiles_and_medians(summary: dict[str, Any]) -> list[str]:
    out = [f"## Performance profiles (area over tau in [1, {R_MAX:g}], 1 = always best)", ""]
    profiles = summary["performance_profiles"]
    names = sorted(set(profiles["steps_to_target"]) | set(profiles["final_loss"]))
    rows = [[s, _num(profiles["steps_to_target"].get(s, {}).get("area"), 3),
             _num(profiles["final_loss"].get(s, {}).get("area"), 3)] for s in names]
    out += [_markdown_table(["schedule", "steps-to-target area", "final-loss area"], rows), ""]
    out += ["## Median final validation loss (metric) per workload/optimizer", ""]
    groups = sorted(summary["medians"])
    schedules = [s for s in SCHEDULES if any(s in summary["medians"][g] for g in groups)]
    rows = []
    for s in schedules:
        row = [s]
        for g in groups:
            m = summary["medians"][g].get(s)
            row.append("" if m is None else
                       f"{_num(m['final_val_loss'], 3)} ({_num(m['final_metric'], 3)})"
                       + (f" [{m['diverged']} div]" if m["diverged"] else ""))
        rows.append(row)
    return out + [_markdown_table(["schedule", *groups], rows), ""]


def _setup_markdown(summary: dict[str, Any], base_lrs: list[dict[str, Any]],
                    provenance: dict[str, str]) -> list[str]:
    out = ["## Base learning rates", "",
           "Protocol: constant schedule, seed 0, suite budget, log-grid; lowest final val loss "
           "wins (see `learnlr.bench.suites`).", ""]
    rows = [[b["workload"], b["optimizer"], str(b["budget_steps"]),
             _num(b["base_lr"], 3) + (" (grid edge)" if b["protocol"].get("at_grid_edge") else ""),
             ", ".join(_num(x, 2) for x in b["protocol"]["grid"]),
             ", ".join(_num(x, 3) for x in b["protocol"]["final_val_losses"])]
            for b in base_lrs]
    out += [_markdown_table(["workload", "optimizer", "budget", "base LR", "grid",
                             "grid final val loss"], rows), ""]
    out += ["## Schedules", ""]
    rows = [[n, s.kind, ", ".join(s.optimizers), s.description] for n, s in SCHEDULES.items()
            if n in summary["timing"]["wall_s"]]
    out += [_markdown_table(["name", "kind", "optimizer columns", "what"], rows), ""]
    out += ["## Workloads and data provenance", ""]
    out += [f"- `{n}`: {p}" for n, p in provenance.items()] + [""]
    out += ["## Median time per cell (s)", "",
            "CPU time is what the cell itself used; wall time also counts other processes.", ""]
    rows = [[s, _num(summary["timing"]["cpu_s"].get(s), 3), _num(t, 3)]
            for s, t in summary["timing"]["wall_s"].items()]
    out += [_markdown_table(["schedule", "cpu", "wall"], rows), ""]
    return out


def render_markdown(
    summary: dict[str, Any],
    base_lrs: list[dict[str, Any]],
    provenance: dict[str, str],
    command: str | None = None,
    flat: Sequence[StoredCell] = (),
    plots: Sequence[str] = PLOT_FILENAMES,
) -> str:
    """The full report.md text: verdict, headline(s), then the detail; ``plots``: the PNG
    files it links to."""
    out = _intro(summary, command) + verdict_markdown(summary, flat)
    if summary.get("by_lr_scale"):
        out += _tracks_markdown(summary)
        out += ["## Detail: the tuned track, paired per seed", "", headline_markdown(summary), ""]
    else:
        out += ["## Headline", "", headline_markdown(summary), ""]
    out += _flat_markdown(flat)
    out += _speed_and_stages(summary) + _profiles_and_medians(summary)
    out += _setup_markdown(summary, base_lrs, provenance)
    return "\n".join([*out, "Plots: " + ", ".join(f"[{p}]({p})" for p in plots), ""])


@dataclass(frozen=True)
class ReportFilter:
    """Which comparison cells a report covers: one suite's, some workloads' (None: all)."""

    suite: str | None = None
    workloads: Sequence[str] | None = None

    def apply(self, cells: list[StoredCell]) -> list[StoredCell]:
        """The cells that pass; ValueError naming the option if one matches nothing."""
        if self.suite is not None:
            present = sorted({c.suite for c in cells})
            cells = [c for c in cells if c.suite == self.suite]
            if not cells:
                raise ValueError(f"--suite {self.suite}: no comparison cells of that suite in "
                                 f"the store (suites there: {', '.join(present) or 'none'})")
        if self.workloads is not None:
            present = sorted({c.config["workload"] for c in cells})
            unknown = [w for w in self.workloads if w not in present]
            if unknown:
                raise ValueError(f"--workloads: {', '.join(unknown)} not in the selection "
                                 f"(workloads there: {', '.join(present) or 'none'})")
            cells = [c for c in cells if c.config["workload"] in self.workloads]
        return cells


def never_changed_lr(store: ExperimentStore, cells: Sequence[StoredCell]) -> list[StoredCell]:
    """Cells of a schedule other than ``constant`` whose stored LR was the same at every step."""
    ranges = store.lr_ranges()
    flat = []
    for cell in cells:
        lo, hi = ranges.get(cell.hash, (None, None))
        if cell.config["schedule"] != "constant" and lo is not None and hi - lo <= 1e-12 * hi:
            flat.append(cell)
    return flat


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: two bench processes sharing a folder both
    write the report, and a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.replace(tmp, path)
    except OSError as exc:  # name the file the user asked for, not our temporary one
        tmp.unlink()
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_report(
    store_dir: Path,
    *,
    out_dir: Path | None = None,
    hashes: set[str] | None = None,
    only: ReportFilter | None = None,
    plugins: Sequence[str] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """Summarize the store in ``store_dir`` (the given cells, or every main cell, narrowed by
    ``only``) and write ``summary.json``, ``report.md`` and the PNG plots into ``out_dir``
    (default: ``store_dir``, which is otherwise only read); returns the summary."""
    out_dir = store_dir if out_dir is None else out_dir
    path = store_dir / STORE_FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no experiment store at {path}")
    with ExperimentStore(path, readonly=True) as store:
        cells = store.cells(hashes=hashes) if hashes is not None else store.cells(purpose="main")
        cells = only.apply(cells) if only is not None else cells
        summary = json_safe(summarize({"config": c.config, "results": c.results} for c in cells))
        flat = never_changed_lr(store, cells)
        used = {(c.config["workload"], c.config["optimizer"], c.config["budget_steps"])
                for c in cells}
        base_lrs = [b for b in store.base_lrs()
                    if (b["workload"], b["optimizer"], b["budget_steps"]) in used]
        provenance = _workload_provenance({w for w, _, _ in used}, plugins)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / SUMMARY_FILENAME, json.dumps(summary, indent=1, sort_keys=True))
        plots = write_plots(store, {c.hash for c in cells}, summary, {c.hash for c in flat},
                            out_dir)
        _write_atomic(out_dir / REPORT_FILENAME, render_markdown(
            summary, base_lrs, provenance, command, flat, [p.name for p in plots]))
    return summary


__all__ = ["TIE_BANDS", "ReportFilter", "headline_markdown", "headline_rows", "verdict_markdown",
           "write_report"]
