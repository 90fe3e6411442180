"""Screen a variant of the LR-warmup guard offline, on the warmups a benchmark store already holds.

Every cell of a schedule with the per-evaluation mode's 5 % linear LR warmup (``wsd``,
``greedy_eval_budget``, the sweep's ``eval20_*`` candidates) stored its training loss and LR at
every step. Up to the step where a guard fires, a run does not depend on the guard, so feeding
those losses to :class:`learnlr.control.brake.WarmupGuard` says, without training anything,
where the shipped guard and a variant (``--margin``, ``--lost-progress``) would end the warmup.
A variant that fires on a tuned (x1) or too-small (x0.1) LR is a false alarm: the run would
restart at a tenth of its LR. Prints the fires per LR track and every run where the two differ.

    python benchmarks/warmup_guard_screen.py bench-out/quick3/runs.sqlite \\
        --schedules wsd greedy_eval_budget --margin 0.1 --lost-progress 1.0
"""

from __future__ import annotations

import argparse
import collections
import math
from pathlib import Path

from learnlr.bench.store import ExperimentStore, Trajectory
from learnlr.control.brake import DEFAULT_MARGIN, GUARD_LOST_PROGRESS, WarmupGuard
from learnlr.control.schedule import eval_warmup_steps


def fire_step(trajectory: Trajectory, guard: WarmupGuard, watch: float = 1.0) -> int | None:
    """The step at which ``guard`` fires on the stored losses, or None; it watches the first
    ``watch`` x warmup steps (1: the warmup only, as shipped)."""
    config = trajectory.config
    peak = config["base_lr"] * float(config.get("lr_scale", 1.0))
    end = round(watch * eval_warmup_steps(config["budget_steps"]))
    for step, lr, loss in zip(trajectory.steps, trajectory.lr, trajectory.train_loss):
        if step >= end:
            return None
        value = math.inf if loss is None else loss
        if guard.push(value, (lr or 0.0) / peak) is not None:
            return step
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--schedules", nargs="+", required=True,
                    help="stored schedule names with the 5 %% warmup (a cand_ prefix is optional)")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    ap.add_argument("--lost-progress", type=float, default=GUARD_LOST_PROGRESS)
    ap.add_argument("--watch", type=float, default=1.0,
                    help="the variant watches the first WATCH x warmup steps (default 1: the "
                         "warmup only); past the warmup a run's losses depend on the shipped "
                         "guard and brake, so only its first fire is comparable")
    args = ap.parse_args()
    wanted = {s.removeprefix("cand_") for s in args.schedules}
    fires: collections.Counter[tuple[float, str]] = collections.Counter()
    runs: collections.Counter[float] = collections.Counter()
    with ExperimentStore(args.store, readonly=True) as store:
        for cell in store.cells():
            config = cell.config
            if config["schedule"].removeprefix("cand_") not in wanted:
                continue
            trajectory = store.trajectory(cell.hash)
            shipped = fire_step(trajectory, WarmupGuard())
            variant = fire_step(trajectory, WarmupGuard(margin=args.margin,
                                                        lost_progress=args.lost_progress),
                                args.watch)
            scale = float(config.get("lr_scale", 1.0))
            runs[scale] += 1
            fires[(scale, "shipped")] += shipped is not None
            fires[(scale, "variant")] += variant is not None
            if shipped != variant:
                print(f"x{scale:<4g} {config['workload']:18s} {config['optimizer']:7s} "
                      f"{config['schedule'][:28]:28s} seed {config['seed']:<5d} "
                      f"shipped fires at {shipped}, variant at {variant}; "
                      f"final val loss {cell.results.get('final_val_loss')}")
    print("\nruns the guard fires on, by LR track (shipped / variant)")
    for scale in sorted(runs):
        print(f"  x{scale:g}: {fires[(scale, 'shipped')]} / {fires[(scale, 'variant')]} "
              f"of {runs[scale]}")


if __name__ == "__main__":
    main()
