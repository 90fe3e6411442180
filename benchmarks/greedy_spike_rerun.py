"""Re-run the stored runs of one sweep candidate whose validation loss spiked as another
candidate, and print both final losses side by side (the check behind ``spike_ceiling``).

A run "spiked" if some evaluation was at least twice the best before it (or non-finite): only
there can ``GreedyConfig.spike_ceiling`` change a run, since without a spike it never sets a
ceiling. Each such run is re-run with ``--to`` on the same config (workload, optimizer, seed,
base LR, LR track, budget) and stored beside it; a second call re-runs nothing.

    OMP_NUM_THREADS=1 python benchmarks/greedy_spike_rerun.py bench-out/sweep-gap/runs.sqlite \\
        --from eval20_down0_brake_warm5_accel_min01_guard_half_gainup \\
        --to eval20_down0_brake_warm5_accel_min01_guard_half_gainup_ceiling
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import greedy_budget_sweep as sweep  # noqa: E402  (the candidates and their cell runner)

from learnlr.bench.records import CellConfig  # noqa: E402
from learnlr.bench.store import ExperimentStore  # noqa: E402
from learnlr.control.greedy import SPIKE_RATIO  # noqa: E402  (the controller's definition)


def spiked(val_curve: list[list[float]]) -> bool:
    """Whether an evaluation was non-finite or at least ``SPIKE_RATIO`` (2) times the best
    before it (a loss: the controller's ``_is_spike`` on a positive best)."""
    best = math.inf
    for _, value in val_curve:
        if not math.isfinite(value) or (best < math.inf and value >= SPIKE_RATIO * best):
            return True
        best = min(best, value)
    return False


def rerun_parser(doc: str) -> argparse.ArgumentParser:
    """The options both re-run scripts take: a sweep store, --from / --to candidates, --workers."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a sweep store (greedy_budget_sweep.py --out)")
    parser.add_argument("--from", dest="source", required=True, help="the stored candidate")
    parser.add_argument("--to", dest="target", required=True, help="the candidate to re-run as")
    parser.add_argument("--workers", type=int, default=1)
    return parser


def rerun(args: argparse.Namespace, selected: Callable[[ExperimentStore, Any], bool],
          what: str) -> None:
    """Re-run as ``--to`` every stored run of ``--from`` that ``selected(store, cell)`` picks
    (none twice), then print each pair of final losses."""
    for name in (args.source, args.target):
        if name not in sweep.CANDIDATES:
            raise SystemExit(f"unknown candidate {name!r} (see greedy_budget_sweep.CANDIDATES)")
    sweep.register_candidates()
    with ExperimentStore(args.store) as store:
        pairs = [(cell, CellConfig.from_json({**cell.config, "schedule": f"cand_{args.target}"}))
                 for cell in store.cells()
                 if cell.config["schedule"] == f"cand_{args.source}" and selected(store, cell)]
        todo = [c.to_json() for _, c in pairs if not store.has_cell(c)]
        print(f"{len(pairs)} runs {what}, {len(todo)} to run", flush=True)
        # fork: the workers inherit the candidates registered above.
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            for result in pool.imap_unordered(sweep._run, todo):
                store.write_cell(result, suite="sweep", purpose="main")
        changed = 0
        for cell, config in pairs:
            before = cell.results["final_val_loss"]
            after = store.get_result(config)["final_val_loss"]
            c = cell.config
            note = "" if after == before else f"   changed: x{after / before:.3g}"
            changed += after != before
            print(f"{c['workload']}/{c['optimizer']} x{c.get('lr_scale', 1.0):g} seed {c['seed']}: "
                  f"{before!r} -> {after!r}{note}")
        print(f"{changed} of {len(pairs)} changed")


def main() -> None:
    args = rerun_parser(__doc__).parse_args()
    rerun(args, lambda store, cell: spiked(cell.results.get("val_curve", [])), "spiked")


if __name__ == "__main__":
    main()
