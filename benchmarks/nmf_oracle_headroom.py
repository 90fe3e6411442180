"""How much can *any* schedule beat step decay on NMF? An oracle headroom study.

For each held-out instance (the same ones as ``nmf_learned_vs_handmade.py``, same target:
1.02 x the best hand-made final loss) this runs 60 open-loop "one drop" schedules
(lr0 in {0.5, 1} x bound, multiplied by g in {0.03, 0.1, 0.3} at step t in
{5, 10, 15, 20, 30, 40, 60, 80, 100, 150}) and keeps, per instance, the fewest steps to target
over them and the 8 step-decay configurations: the *oracle*. Every run uses the instance's fixed
noise stream, so a closed-loop schedule (GreedyLR, the RL policy) realises one open-loop LR
sequence on it; the per-instance best of a rich open-loop family therefore estimates what the
best possible schedule under the stability bound can reach. If the oracle itself is <= 0.7x the
best step decay on only a fraction of the instances, no learned schedule can do better than that
fraction (up to the richness of the family).

Also reported: "fast-phase-limited" instances, where constant at the bound reaches the target as
early as the best step decay (the target lies above the constant LR's noise floor, so the only
way to be faster is a larger LR, which the bound forbids).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nmf_oracle_headroom.py --instances 60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from learnlr.rl.evaluation import compare_on_instance, held_out_instances, oracle_steps
from learnlr.rl.policy import load_policy
from learnlr.rl.scheduler import PRETRAINED, pretrained_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--goal", type=float, default=0.7, help="ratio goal (default 0.7)")
    parser.add_argument("--policy", default="nmf", help="'nmf', a saved policy stem, or 'none'")
    parser.add_argument("--out", type=Path, default=Path("bench-out/nmf"))
    args = parser.parse_args(argv)

    policy = None
    if args.policy != "none":
        path = pretrained_path(args.policy) if args.policy in PRETRAINED else Path(args.policy)
        policy = load_policy(path)
    started = time.perf_counter()
    rows = []
    for inst in track(held_out_instances(args.instances), description="instances"):
        result = compare_on_instance(inst, policy, budget=args.budget)
        best, name = oracle_steps(inst, result, budget=args.budget)
        rows.append({"name": inst.problem.name, "oracle": best, "oracle_schedule": name,
                     **{k: v for k, v in result.steps.items()}})
    seconds = time.perf_counter() - started

    step = np.array([r["step"] for r in rows], dtype=float)
    oracle = np.array([r["oracle"] for r in rows], dtype=float)
    constant = np.array([r["constant"] for r in rows], dtype=float)
    fast_limited = constant <= step
    summary = {
        "instances": len(rows),
        "budget": args.budget,
        "goal": args.goal,
        "median_steps": {"oracle": float(np.median(oracle)), "step": float(np.median(step))},
        "oracle_over_step_median": float(np.median(oracle / step)),
        "oracle_le_goal_fraction": float(np.mean(oracle / step <= args.goal)),
        "fast_phase_limited_fraction": float(np.mean(fast_limited)),
        "seconds": round(seconds, 1),
    }
    console = Console()
    table = Table(title=f"Headroom on {len(rows)} held-out NMF instances "
                        f"(budget {args.budget}; steps to target, {args.budget + 1} = not reached)")
    for col in ("schedule", "median steps", "ratio to best step decay (median)",
                f"<= {args.goal}x best step decay"):
        table.add_column(col)
    families = ["oracle", "step"] + (["rl"] if policy is not None else []) + ["cosine", "constant"]
    for family in families:
        steps = np.array([r[family] for r in rows], dtype=float)
        ratio = steps / step
        table.add_row(family, f"{np.median(steps):.0f}", f"{np.median(ratio):.2f}",
                      f"{np.mean(ratio <= args.goal):.0%}")
        summary["median_steps"][family] = float(np.median(steps))
    console.print(table)
    if policy is not None:
        rl = np.array([r["rl"] for r in rows], dtype=float)
        headroom = step - oracle
        gained = np.where(headroom > 0, (step - rl) / np.maximum(headroom, 1), np.nan)
        summary["rl_over_oracle_median"] = float(np.median(rl / oracle))
        summary["rl_share_of_headroom_median"] = (
            float(np.nanmedian(gained)) if np.any(headroom > 0) else None)
        console.print(f"rl / oracle: median {summary['rl_over_oracle_median']:.2f}; where the "
                      f"oracle beats step decay, rl recovers a median "
                      f"{summary['rl_share_of_headroom_median']:.2f} of that headroom")
    console.print(
        f"oracle <= {args.goal}x best step decay on {summary['oracle_le_goal_fraction']:.0%} of "
        f"instances (median ratio {summary['oracle_over_step_median']:.2f}); "
        f"{summary['fast_phase_limited_fraction']:.0%} are fast-phase-limited "
        f"(constant at the bound is as fast as the best step decay). {seconds:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nmf_oracle_headroom.json").write_text(
        json.dumps({"summary": summary, "instances": rows}, indent=2) + "\n")
    console.print(f"wrote {args.out}/nmf_oracle_headroom.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
