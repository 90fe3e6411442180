"""Where a stored schedule took the LR: its LR relative to the starting LR along the run.

For every (workload, optimizer, LR track) of a benchmark store, prints the LR of one schedule at
fractions of the budget (the mean over the stored seeds), divided by the cell's starting LR,
beside the seed-mean final validation loss relative to WSD's on the same pair. It shows what a
feedback rule did where a fixed schedule's shape is known in advance: climbs above 1, descents
below, the lower bound at 0.1.

    python benchmarks/greedy_lr_profile.py bench-out/full [--schedule greedy_step] [--tracks 1]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from learnlr.bench.schedules import schedule_fingerprint
from learnlr.bench.store import ExperimentStore

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def lr_profiles(store: ExperimentStore, schedule: str, tracks: set[float]
                ) -> dict[tuple[str, str, float], list[list[float]]]:
    """(workload, optimizer, track) -> one LR profile per stored seed (today's code only)."""
    out: dict[tuple[str, str, float], list[list[float]]] = defaultdict(list)
    fingerprint = schedule_fingerprint(schedule)
    for t in store.trajectories(schedule=schedule):
        scale = t.config.get("lr_scale", 1.0)
        if scale not in tracks or t.config.get("fingerprint", "") != fingerprint or not t.lr:
            continue
        start = t.config["base_lr"] * scale
        n = len(t.lr)
        out[(t.config["workload"], t.config["optimizer"], scale)].append(
            [t.lr[max(0, round(f * n) - 1)] / start for f in FRACTIONS])
    return out


def final_losses(store: ExperimentStore, schedule: str) -> dict[tuple[str, str, float], float]:
    """(workload, optimizer, track) -> seed-mean final validation loss of finished runs."""
    losses: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    fingerprint = schedule_fingerprint(schedule)
    for c in store.cells(purpose="main"):
        cfg, res = c.config, c.results
        if (cfg["schedule"] == schedule and cfg.get("fingerprint", "") == fingerprint
                and res.get("status") == "ok" and res.get("final_val_loss") is not None):
            losses[(cfg["workload"], cfg["optimizer"], cfg.get("lr_scale", 1.0))].append(
                res["final_val_loss"])
    return {k: statistics.mean(v) for k, v in losses.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--schedule", default="greedy_step")
    ap.add_argument("--tracks", nargs="+", type=float, default=[0.1, 1.0, 10.0])
    args = ap.parse_args()
    with ExperimentStore(args.folder / "runs.sqlite", readonly=True) as store:
        profiles = lr_profiles(store, args.schedule, set(args.tracks))
        ours, wsd = final_losses(store, args.schedule), final_losses(store, "wsd")
    print(f"{args.schedule}: LR / starting LR at a fraction of the budget (seed mean), "
          "final loss / wsd's")
    print(f"{'workload':<20}{'optimizer':<9}{'track':>6}  "
          + "".join(f"{f:>6.0%}" for f in FRACTIONS) + "   vs wsd  seeds")
    for key in sorted(profiles):
        mean = [statistics.mean(p[i] for p in profiles[key]) for i in range(len(FRACTIONS))]
        ratio = ours[key] / wsd[key] if key in ours and key in wsd else float("nan")
        w, o, scale = key
        print(f"{w:<20}{o:<9}{'x' + format(scale, 'g'):>6}  "
              + "".join(f"{m:6.2f}" for m in mean) + f"   {ratio:6.3f}  {len(profiles[key])}")


if __name__ == "__main__":
    main()
