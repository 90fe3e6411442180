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
from learnlr.bench.suites import TRACK_SCHEDULES
from learnlr.bench.summary import (
    GREEDY_SCHEDULES,
    R_MAX,
    SUBJECT,
    SUBJECTS,
    TIE_BANDS,
    json_safe,
    summarize,
)

SUMMARY_FILENAME = "summary.json"
REPORT_FILENAME = "report.md"
GREEDY_FAMILY = frozenset((*GREEDY_SCHEDULES, *SUBJECTS, *SCHEDULE_ALIASES["greedy"]))
"""learnlr's own GreedyLR variants: shown in the tables, but not rivals in the verdict."""
SUBJECT_ROLES = {
    "greedy_step": "`GreedyLR(opt, total_steps=N)` stepped after every optimizer step, learnlr's "
                   "default when you do not evaluate",
    "greedy_eval_budget": "`EvalGreedyLR(opt, total_steps=N)`, deciding after each evaluation, "
                          "learnlr's default when you evaluate",
}
"""What each verdict's subject is, in the README's words."""
HOLDS_ITS_OWN = 0.5
"""The verdict's rule: GreedyLR "holds its own" against a rival when it is as good or better
(1% band) in at least this fraction of the paired runs."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 4, inf: str = "diverged") -> str:
    """``value`` to ``digits`` digits; ``inf`` for an infinite one (a diverged run's loss)."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return inf
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
           n_cells: int | None, area_where: str = "") -> tuple[str, str]:
    """(the numbers sentence, the conclusion) for ``name`` against ``rivals`` (AGoB tallies);
    ``areas``: final-loss profile area per schedule (``area_where`` says over what); ``n_flat``
    of its ``n_cells`` cells never changed the LR."""
    fixed = {r: e for r, e in rivals.items() if r in FIXED_SCHEDULES}
    others = {r: e for r, e in rivals.items() if r not in fixed}
    listed = "; ".join(_rival_phrase(r, fixed[r]) for r in FIXED_SCHEDULES if r in fixed)
    parts = [f"`{name}` was as good as or better than (1% band, W/T/L) "
             + (listed or "; ".join(_rival_phrase(r, e) for r, e in others.items()))]
    if fixed:
        parts.append(f"it holds its own against {len(_held(fixed))} of {len(fixed)} tuned fixed "
                     "schedules" + (f" and {len(_held(others))} of {len(others)} other rivals "
                                    f"({', '.join(others)})" if others else ""))
    if name in areas:
        ranked = sorted(areas, key=lambda s: (-areas[s], s))
        parts.append(f"{area_where}its final-loss profile area is {areas[name]:.2f}, rank "
                     f"{ranked.index(name) + 1} of {len(ranked)} (best: {ranked[0]}, "
                     f"{areas[ranked[0]]:.2f})")
    if n_flat:
        parts.append(f"it never changed the LR in {n_flat} of its {n_cells} cells")
    return "; ".join(parts) + ".", _conclusion(rivals, n_flat, n_cells, tuned=True)


def _conclusion(rivals: dict[str, Any], n_flat: int, n_cells: int | None, *, tuned: bool) -> str:
    """The verdict's rule on one track's tallies; ``tuned``: the rivals ran at the tuned base LR
    (else all started from the same mis-set LR, so none of them is tuned)."""
    fixed = {r: e for r, e in rivals.items() if r in FIXED_SCHEDULES}
    held = _held(fixed)
    beats_constant = rivals.get("constant", {}).get("as_good_or_better") or 0.0
    same_lr = "" if tuned else " started from the same mis-set LR"
    if n_cells is not None and n_flat * 2 > n_cells:
        return ("**no evidence either way**: it mostly never moved the LR, so its results are "
                "the base LR's")
    if rivals and len(_held(rivals)) == len(rivals):
        return "**use it**: it held its own against every rival here"
    if beats_constant >= HOLDS_ITS_OWN and len(held) * 2 >= len(fixed):
        if tuned:
            return ("**use it instead of a constant LR or an untuned schedule**; it does not "
                    "match every tuned schedule")
        return f"**use it instead of a constant LR**; it does not match every fixed schedule{same_lr}"
    if beats_constant >= HOLDS_ITS_OWN:
        fixed_kind = "tuned fixed schedules" if tuned else f"fixed schedules{same_lr}"
        return f"**only as a replacement for a constant LR**: most {fixed_kind} did better"
    return f"**not on this evidence**: a constant LR{same_lr} was as good or better more often"


def _rule(summary: dict[str, Any], pairing: str) -> list[str]:
    return [f"Rule: GreedyLR holds its own against a rival when it is as good or better in at "
            f"least {HOLDS_ITS_OWN:.0%} of the {pairing} (1% band); learnlr's own variants "
            f"(greedy_*) are never rivals. Over {summary['cells']} cells; read the tables below "
            "for where it falls short.", ""]


def _count(cells: Sequence[StoredCell], schedule: str, scale: float = 1.0) -> int:
    return sum(1 for c in cells if c.config["schedule"] == schedule
               and float(c.config.get("lr_scale", 1.0)) == scale)


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


def _by_subject(track: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One track's tallies per learnlr default: {subject: {rival: tally}}."""
    by_subject = track.get("greedy_vs_by_subject")
    if by_subject is None:  # a summary written before greedy_vs_by_subject existed
        by_subject = {track.get("subject", SUBJECT): track.get("greedy_vs", {})}
    return by_subject


def _subject_rivals(track: dict[str, Any], subject: str) -> dict[str, Any]:
    """``subject``'s tallies on one track against every schedule outside learnlr's family."""
    return {r: e for r, e in _by_subject(track).get(subject, {}).items()
            if r not in GREEDY_FAMILY and e["n"]}


def sorted_tracks(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The summary's LR tracks (``by_lr_scale``), smallest scale first."""
    return sorted(summary.get("by_lr_scale", {}).items(), key=lambda kv: float(kv[0]))


def _tracks_verdict(summary: dict[str, Any], flat: Sequence[StoredCell],
                    n_cells: dict[str, int]) -> list[str]:
    """One verdict per learnlr default present: its tuned track, then each mis-set track."""
    tracks = dict(sorted_tracks(summary))
    tuned_key = "1" if "1" in tracks else next(iter(tracks))
    tuned = tracks[tuned_key]
    subjects = [s for s in dict.fromkeys((tuned.get("subject", SUBJECT), *SUBJECTS))
                if _subject_rivals(tuned, s)]
    if not subjects:
        return ["No GreedyLR cells with a paired rival in this selection.", ""]
    out: list[str] = []
    for subject in subjects:
        cells = tuned.get("cells_per_schedule", {}).get(subject, n_cells.get(subject, 0))
        numbers, conclusion = _judge(
            subject, _subject_rivals(tuned, subject), summary.get("profile_area_all_tracks", {}),
            _count(flat, subject, float(tuned_key)), cells,
            area_where=f"over all {len(tracks)} LR tracks (the schedules that ran on each), ")
        where = "the tuned base LR" if tuned_key == "1" else _scale_label(tuned_key)
        role = SUBJECT_ROLES.get(subject)
        out += [f"### `{subject}`" + (f": {role}" if role else ""), "",
                f"At {where}, {numbers} Verdict: {conclusion}.", ""]
        lines = [_mis_set_line(subject, scale, track, flat) for scale, track in tracks.items()
                 if scale != tuned_key and _subject_rivals(track, subject)]
        out += ["With a mis-set base LR:", "", *lines, ""] if lines else []
    return out + _rule(summary, "(workload, optimizer) pairs, seed means")


def _mis_set_line(subject: str, scale: str, track: dict[str, Any],
                  flat: Sequence[StoredCell]) -> str:
    """A bullet: ``subject``'s tallies on a mis-set track and the rule's conclusion there."""
    rivals = _subject_rivals(track, subject)
    conclusion = _conclusion(rivals, _count(flat, subject, float(scale)),
                             track.get("cells_per_schedule", {}).get(subject), tuned=False)
    shown = "; ".join(_rival_phrase(r, rivals[r]) for r in ("constant", "cosine") if r in rivals)
    return (f"- {_scale_label(scale)}: it held its own against {len(_held(rivals))} of "
            f"{len(rivals)} rivals" + (f" (as good or better than {shown})" if shown else "")
            + f". Verdict: {conclusion}.")


def _scale_label(scale: str) -> str:
    return f"base LR x{scale}"


def track_title(scale: str, track: dict[str, Any]) -> str:
    """A track table's title: its LR scale and how many (workload, optimizer) pairs."""
    n = track.get("n_pairs", 0)
    return f"{_scale_label(scale)} ({n} pair{'' if n == 1 else 's'}, seed means)"


def track_table(track: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of one LR track's headline: the AGoB rate and W/T/L of each of learnlr's
    defaults present against every other schedule (registry order)."""
    by_subject = _by_subject(track)
    # A fixed column order: summary.json stores the subjects sorted by name.
    order = dict.fromkeys((track.get("subject", SUBJECT), *SUBJECTS, *by_subject))
    by_subject = {s: by_subject[s] for s in order if by_subject.get(s)}
    names = {r for v in by_subject.values() for r in v}
    rivals = [s for s in SCHEDULES if s in names] + sorted(names - set(SCHEDULES))
    columns = ["vs schedule"]
    for subject in by_subject:
        columns += [f"{subject} AGoB (1% rel)", "W/T/L"]
    rows = []
    for rival in rivals:
        row = [rival]
        for tallies in by_subject.values():
            entry = tallies.get(rival)
            row += [_pct(entry and entry["as_good_or_better"]), _wtl(entry)]
        rows.append(row)
    return columns, rows


def _track_scope() -> str:
    """Why rivals of the tuned track are missing from the x0.1 / x10 tables."""
    lr_free = [n for n, spec in SCHEDULES.items() if not spec.uses_base_lr]
    return (f"Only {', '.join(TRACK_SCHEDULES)} (`learnlr.bench.suites.TRACK_SCHEDULES`) run at "
            f"every LR scale, and the peers that set their own step size ({', '.join(lr_free)}) "
            "run once and count in every track; every other schedule runs at the tuned LR only, "
            "so it appears in the x1 table alone.")


def _tracks_markdown(summary: dict[str, Any]) -> list[str]:
    """One headline table per LR-scale track (``by_lr_scale``), then the effect sizes."""
    tracks = sorted_tracks(summary)
    out = ["## Headline by LR scale", "",
           "Each track starts every schedule from the tuned base LR times the scale (x0.1, x10: "
           "a mis-set LR). " + _track_scope() + " Each of learnlr's defaults against each "
           "schedule on the seed-mean final val loss per (workload, optimizer), 1% band.", ""]
    for scale, track in tracks:
        out += [f"### {track_title(scale, track)}", "", _markdown_table(*track_table(track)), ""]
    rivals = list(dict.fromkeys(r for _, t in tracks for r in t.get("effect_sizes", {})))
    if rivals:
        subject = tracks[0][1].get("subject", SUBJECT)
        out += ["## Effect sizes", "",
                f"Median over (workload, optimizer) pairs of `{subject}`'s seed-mean final val "
                "loss divided by the rival's (< 1: GreedyLR lower; inf: GreedyLR diverged), with "
                "a 95% bootstrap interval.", ""]
        rows = [[r, *(_effect(t.get("effect_sizes", {}).get(r)) for _, t in tracks)]
                for r in rivals]
        out += [_markdown_table(["vs schedule", *(_scale_label(s) for s, _ in tracks)], rows), ""]
    return out


def _effect(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("median_ratio") is None:
        return "-"
    low, high = entry.get("ci95", [None, None])
    return (f"{_num(entry['median_ratio'], 3, inf='inf')} "
            f"[{_num(low, 3, inf='inf')}, {_num(high, 3, inf='inf')}]")


def _intro(summary: dict[str, Any], commands: Sequence[str]) -> list[str]:
    out = ["# learnlr bench report", ""]
    for command in commands:
        out += [f"Command: `{command}`", ""]
    if summary.get("by_lr_scale"):
        pairing = ("The verdict, the per-track headline tables and the effect sizes compare seed "
                   "means, one per (workload, optimizer); the detail sections (tuned track only) "
                   "pair runs on (workload, optimizer, seed)")
    else:
        pairing = "Runs are paired on (workload, optimizer, seed)"
    return out + [
        f"{summary['cells']} cells. GreedyLR's **as-good-or-better (AGoB)** rate against a "
        f"schedule is the share of comparisons it wins or ties on the final validation loss. "
        f"{pairing}. Tie bands: 1% relative and the paper's 0.1 absolute. W/T/L = "
        "wins/ties/losses (1% band). Peers replace the optimizer and are compared only in the "
        "columns listed.", ""]


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
    out = ["## Steps to target, GreedyLR vs cosine (tuned track)", "",
           "Target per (workload, optimizer) = median best val loss of the tuned fixed schedules. "
           "Speedup = cosine's steps / GreedyLR's steps (>1: GreedyLR faster), over pairs where "
           "both reach it.", ""]
    rows = [[g, _num(s["median_speedup"], 3), str(s["n_both_reached"]),
             str(s["only_greedy_reached"]), str(s["only_cosine_reached"]), str(s["neither_reached"])]
            for g, s in summary["speedup_vs_cosine"].items()]
    out += [_markdown_table(["schedule", "median speedup", "both reached", "only greedy",
                             "only cosine", "neither"], rows), ""]
    out += ["## By stage of training (tuned track, vs all fixed schedules, 1% band)", ""]
    rows = [[g, *(_pct(v[f]["as_good_or_better"]) for f in ("0.1", "0.5", "1.0"))]
            for g, v in summary["stage_rates"].items()]
    out += [_markdown_table(["schedule", "10%", "50%", "100%"], rows), ""]
    out += ["## By workload (tuned track, vs all fixed schedules, 1% band)", ""]
    rows = [[g, w, _pct(t["as_good_or_better"]), _wtl(t)]
            for g, per in summary["per_workload"].items() for w, t in per.items()]
    return out + [_markdown_table(["schedule", "workload", "AGoB", "W/T/L"], rows), ""]


def _profiles_and_medians(summary: dict[str, Any]) -> list[str]:
    out = [f"## Performance profiles, tuned track (area over tau in [1, {R_MAX:g}], 1 = always "
           "best)", "",
           "Per (workload, optimizer, seed) at the tuned base LR; the verdict's profile area is "
           "over all LR tracks (`profile_area_all_tracks`).", ""]
    profiles = summary["performance_profiles"]
    names = sorted(set(profiles["steps_to_target"]) | set(profiles["final_loss"]))
    rows = [[s, _num(profiles["steps_to_target"].get(s, {}).get("area"), 3),
             _num(profiles["final_loss"].get(s, {}).get("area"), 3)] for s in names]
    out += [_markdown_table(["schedule", "steps-to-target area", "final-loss area"], rows), ""]
    out += ["## Median final validation loss (metric) per workload/optimizer, tuned track", ""]
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
    commands: Sequence[str] = (),
    flat: Sequence[StoredCell] = (),
    plots: Sequence[str] = PLOT_FILENAMES,
) -> str:
    """The full report.md text: verdict, headline(s), then the detail; ``summary`` as
    :func:`summarize` returns it (infinite values read "diverged" / "inf"); ``commands``: the
    bench command lines that made the cells; ``plots``: the PNG files it links to."""
    out = _intro(summary, commands) + verdict_markdown(summary, flat)
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


def _previous_commands(store_dir: Path) -> list[str]:
    """The ``Command:`` lines of the report.md already in ``store_dir``: a store made before
    bench recorded its commands keeps them when the report is rebuilt."""
    try:
        lines = (store_dir / REPORT_FILENAME).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    prefix = "Command: `"
    return [line[len(prefix):-1] for line in lines
            if line.startswith(prefix) and line.endswith("`")]


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
    (default: ``store_dir``, which is otherwise only read); returns the summary as written to
    summary.json.

    ``command``: the bench command that made these cells; without it, the commands the store
    recorded for their suites (or, for an older store, the previous report's).
    """
    out_dir = store_dir if out_dir is None else out_dir
    path = store_dir / STORE_FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no experiment store at {path}")
    with ExperimentStore(path, readonly=True) as store:
        cells = store.cells(hashes=hashes) if hashes is not None else store.cells(purpose="main")
        cells = only.apply(cells) if only is not None else cells
        if not cells and hashes is None:  # an empty report would read as a finished one
            raise ValueError(f"no comparison cells in {path} (run `learnlr bench` first)")
        # report.md is rendered from the raw summary: JSON has no inf, and a diverged run must
        # read "diverged", not "-" (missing).
        raw = summarize({"config": c.config, "results": c.results} for c in cells)
        summary = json_safe(raw)
        commands = ([command] if command else store.commands({c.suite for c in cells})
                    or _previous_commands(store_dir))
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
            raw, base_lrs, provenance, commands, flat, [p.name for p in plots]))
    return summary


__all__ = ["TIE_BANDS", "ReportFilter", "headline_markdown", "headline_rows", "sorted_tracks",
           "track_table", "track_title", "verdict_markdown", "write_report"]
