"""The budget-aware GreedyLR's goal figures from a benchmark store (issue 9's measure).

Reads the main cells of a ``learnlr bench`` folder and prints, for ``--subject`` (default
``greedy_step``, learnlr's default):

* tuned track: as-good-or-better rate (seed means of the final val loss, 1 % band) against every
  fixed schedule, and the pairs where it loses;
* every track: the median ratio of its seed-mean final loss to the best schedule of the pair
  (all schedules and peers of that track), with the same for the main rivals;
* the performance-profile area (final loss, every track), ranked;
* for each tuned-track loss, two bounds from the subject's own validation curve (seed means, over
  the rival's final loss): "first miss", where a rule that froze the weights at its first
  evaluation without a new best would end, and "best seen", where a hindsight stop at its best
  evaluation would. A reactive rule only learns of a rise at the first miss: where even that
  bound is behind the rival, no feedback rule on the same trajectory can win the pair.

``--workloads`` restricts the figures (e.g. to the half not used to choose the defaults).

    python benchmarks/budget_greedy_goal.py bench-out/quick3 [--workloads mnist1d reviews-text ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from learnlr.bench.schedules import FIXED_SCHEDULES, schedule_fingerprint
from learnlr.bench.store import ExperimentStore
from learnlr.bench.summary import (
    compare,
    ratio_to_best,
    schedule_kinds,
    seed_means,
    split_tracks,
    summarize_tracks,
)

RIVALS = ("wsd", "cosine", "linear", "constant", "greedy_reactive", "schedulefree")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--workloads", nargs="*")
    ap.add_argument("--subject", default="greedy_step")
    ap.add_argument("--exclude", nargs="*", default=(),
                    help="schedules to leave out (e.g. ones a partial run did not finish)")
    args = ap.parse_args()
    with ExperimentStore(args.folder / "runs.sqlite") as store:
        # Only cells of today's code: a store also keeps the cells that older defaults (or an
        # older policy) produced, under another fingerprint.
        cells = [{"config": c.config, "results": c.results}
                 for c in store.cells(purpose="main")
                 if (not args.workloads or c.config["workload"] in args.workloads)
                 and c.config["schedule"] not in args.exclude
                 and c.config.get("fingerprint", "") == schedule_fingerprint(c.config["schedule"])]
    subject = args.subject
    _, lr_free = schedule_kinds()
    tracks = split_tracks(cells, lr_free)
    tuned = seed_means(tracks["1"])
    print(f"{len(cells)} cells, {len(tuned)} (workload, optimizer) pairs; subject {subject}")
    print("\ntuned track, seed means, 1 % band: as good or better than ...")
    losses = []
    for rival in FIXED_SCHEDULES:
        out = [(compare(m[subject], m[rival], "rel_1pct"), p) for p, m in tuned.items()
               if subject in m and rival in m]
        if not out:
            continue
        agob = sum(o >= 0 for o, _ in out) / len(out)
        lost = ", ".join(f"{w}/{opt}" for outcome, (w, _, opt) in out if outcome < 0)
        losses += [(rival, p) for outcome, p in out if outcome < 0]
        print(f"  {rival:<14} {agob:5.0%} of {len(out)}   loses on: {lost or '-'}")
    _print_stop_bounds(tracks["1"], subject, losses, tuned)
    print("\nmedian ratio of the seed-mean final loss to the best schedule of the pair")
    print(f"  {'schedule':<16}" + "".join(f"{'x' + k:>9}" for k in sorted(tracks, key=float)))
    for s in (subject, *RIVALS):
        row = []
        for k in sorted(tracks, key=float):
            r = ratio_to_best(seed_means(tracks[k]), s)
            row.append(f"{statistics.median(r):9.3f}" if r else f"{'-':>9}")
        print(f"  {s:<16}" + "".join(row))
    for k in sorted(tracks, key=float):
        means = seed_means(tracks[k])
        worst = sorted(((r, p) for p, m in means.items() if subject in m
                        for r in [m[subject] / min(m.values())]), reverse=True)[:3]
        print(f"  x{k} worst pairs for {subject}: " +
              ", ".join(f"{w}/{o} {r:.2f}" for r, (w, _, o) in worst))
    area = summarize_tracks(cells, subject, lr_free)["profile_area_all_tracks"]
    print("\nperformance-profile area (final loss, every track), highest first")
    for s, a in sorted(area.items(), key=lambda kv: -kv[1]):
        print(f"  {s:<16} {a:.3f}")


def _first_miss(curve: list[list[float]]) -> float:
    """The validation loss at the first evaluation that sets no new best (the last if none)."""
    best = curve[0][1]
    for _, value in curve[1:]:
        if value >= best:
            return value
        best = value
    return curve[-1][1]


def _print_stop_bounds(cells: list, subject: str, losses: list, tuned: dict) -> None:
    """Per lost tuned-track pair: the subject's first-miss and best-seen losses over the rival's
    final (seed means over the seeds in the store)."""
    if not losses:
        return
    bounds: dict[tuple, list[tuple[float, float]]] = {}
    for cell in cells:
        c, r = cell["config"], cell["results"]
        if c["schedule"] == subject and r.get("status") == "ok" and r.get("val_curve"):
            pair = (c["workload"], int(c.get("budget_steps", 0)), c["optimizer"])
            bounds.setdefault(pair, []).append((_first_miss(r["val_curve"]), r["best_val_loss"]))
    print("  where it loses: its own curve's first miss / best seen over the rival's final "
          "(> 1.01: out of reach of a rule that reacts to the validation loss)")
    for rival, pair in sorted(losses, key=lambda rp: rp[1]):
        if pair not in bounds:
            continue
        miss = statistics.fmean(b[0] for b in bounds[pair]) / tuned[pair][rival]
        seen = statistics.fmean(b[1] for b in bounds[pair]) / tuned[pair][rival]
        print(f"    {pair[0]}/{pair[2]} vs {rival}: final {tuned[pair][subject] / tuned[pair][rival]:.3f}, "
              f"first miss {miss:.3f}, best seen {seen:.3f}")


if __name__ == "__main__":
    main()
