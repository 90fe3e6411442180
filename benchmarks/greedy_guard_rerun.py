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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from greedy_spike_rerun import rerun, rerun_parser  # noqa: E402  (the shared re-run loop)
from warmup_guard_screen import fire_step  # noqa: E402

from learnlr.control.brake import WarmupGuard  # noqa: E402


def main() -> None:
    parser = rerun_parser(__doc__)
    parser.add_argument("--watch", type=float, default=2.0)
    args = parser.parse_args()

    def watched(store, cell) -> bool:
        trajectory = store.trajectory(cell.hash)
        fired = fire_step(trajectory, WarmupGuard(), args.watch)
        return fired is not None and fired != fire_step(trajectory, WarmupGuard())

    rerun(args, watched, "the watch fires on")


if __name__ == "__main__":
    main()
