"""Re-run the stored runs of one sweep candidate on which a longer warmup-guard watch would fire,
as another candidate, and print both final losses side by side (the check behind GUARD_WATCH).

Up to the step where the guard fires, a run does not depend on it (see
``warmup_guard_screen.py``), so only the runs where the guard watching ``--watch`` x the warmup
fires, and the shipped warmup-only guard does not fire at the same step, can change. Each is
re-run with ``--to`` on the same config and stored beside it; a second call re-runs nothing.

    OMP_NUM_THREADS=1 python benchmarks/greedy_guard_rerun.py SWEEP_STORE \\
        --from eval20_down0_brake_warm5_accel_min01_guard_half_gainup \\
        --to eval20_down0_brake_warm5_accel_min01_guard_half_gainup_watch2 --watch 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import greedy_budget_sweep as sweep  # noqa: E402  (the candidates and their cell runner)
from warmup_guard_screen import fire_step  # noqa: E402

from learnlr.bench.records import CellConfig  # noqa: E402
from learnlr.bench.store import ExperimentStore  # noqa: E402
from learnlr.control.brake import WarmupGuard  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a sweep store (greedy_budget_sweep.py --out)")
    parser.add_argument("--from", dest="source", required=True, help="the stored candidate")
    parser.add_argument("--to", dest="target", required=True, help="the candidate to re-run as")
    parser.add_argument("--watch", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for name in (args.source, args.target):
        if name not in sweep.CANDIDATES:
            raise SystemExit(f"unknown candidate {name!r} (see greedy_budget_sweep.CANDIDATES)")
    sweep.register_candidates()
    with ExperimentStore(args.store) as store:
        pairs = []
        for cell in store.cells():
            if cell.config["schedule"] != f"cand_{args.source}":
                continue
            trajectory = store.trajectory(cell.hash)
            shipped = fire_step(trajectory, WarmupGuard())
            watched = fire_step(trajectory, WarmupGuard(), args.watch)
            if watched is not None and watched != shipped:
                config = CellConfig.from_json({**cell.config, "schedule": f"cand_{args.target}"})
                pairs.append((cell, config))
        todo = [c.to_json() for _, c in pairs if not store.has_cell(c)]
        print(f"the watch fires on {len(pairs)} runs, {len(todo)} to run", flush=True)
        # fork: the workers inherit the candidates registered above.
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            for result in pool.imap_unordered(sweep._run, todo):
                store.write_cell(result, suite="sweep", purpose="main")
        for cell, config in pairs:
            before = cell.results["final_val_loss"]
            after = store.get_result(config)["final_val_loss"]
            c = cell.config
            ratio = f"   x{after / before:.3g}" if before and after else ""
            print(f"{c['workload']}/{c['optimizer']} x{c.get('lr_scale', 1.0):g} seed {c['seed']}: "
                  f"{before!r} -> {after!r}{ratio}")


if __name__ == "__main__":
    main()
