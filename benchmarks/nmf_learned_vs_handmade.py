"""Steps to a target loss on held-out NMF instances: learned (RL) vs hand-made schedules.

Schedules (all through the same projected-SGD solver, same init and noise stream per instance,
LR capped at 0.95x the stability bound each step): constant (1.0x the initial bound), step decay
(best of 8 per instance: lr0 in {0.5, 1.0} x gamma in {0.1, 0.3} x every {budget/4, budget/2}),
cosine (1.0x), GreedyLR (0.5x, window 10, patience 10) and the RL policy (starts at 1.0x, like constant and cosine).
Target per instance: 1.02 x the best final loss of any hand-made schedule. Not reached = budget+1.

Run:  .venv/bin/python benchmarks/nmf_learned_vs_handmade.py --instances 60 --out bench-out/nmf
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

from learnlr.rl.evaluation import compare_on_instance, held_out_instances, summarize_instances
from learnlr.rl.plots import plot_instance, plot_ratio_histogram
from learnlr.rl.policy import load_policy
from learnlr.rl.scheduler import PRETRAINED, pretrained_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--policy", default="nmf", help="'nmf' or a saved policy path stem")
    parser.add_argument("--out", type=Path, default=Path("bench-out/nmf"))
    args = parser.parse_args(argv)

    path = pretrained_path(args.policy) if args.policy in PRETRAINED else Path(args.policy)
    policy = load_policy(path)
    started = time.perf_counter()
    results = [compare_on_instance(inst, policy, budget=args.budget, tolerance=args.tolerance)
               for inst in track(held_out_instances(args.instances), description="instances")]
    summary = summarize_instances(results)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["policy"] = str(path)
    summary["budget"] = args.budget
    summary["tolerance"] = args.tolerance

    console = Console()
    table = Table(title=f"Steps to target on {len(results)} held-out NMF instances "
                        f"(budget {args.budget}; {args.budget + 1} = not reached)")
    for col in ("schedule", "median steps", "mean steps", "not reached", "diverged",
                "rl faster on"):
        table.add_column(col)
    for family in ("rl", "step", "cosine", "greedy", "constant"):
        steps = [r.steps[family] for r in results]
        faster = "" if family == "rl" else f"{summary['rl_win_rate'][family]:.0%}"
        table.add_row(family, f"{np.median(steps):.0f}", f"{np.mean(steps):.1f}",
                      str(sum(s > args.budget for s in steps)),
                      str(summary["divergences"][family]), faster)
    console.print(table)
    ratios = np.array([r.steps["rl"] / r.steps["step"] for r in results])
    console.print(f"steps(rl) / steps(best step decay): median {np.median(ratios):.2f}, "
                  f"quartiles {np.quantile(ratios, 0.25):.2f}-{np.quantile(ratios, 0.75):.2f}; "
                  f"<= 0.7x on {np.mean(ratios <= 0.7):.0%} of instances (goal: >= 90%)")
    console.print(f"vs the best single step-decay config ({summary['best_fixed_step_config']}): "
                  f"median ratio {summary['median_ratio_rl_over_best_fixed_step']:.2f}, <= 0.7x on "
                  f"{summary['fraction_ratio_le_goal_vs_fixed_step']:.0%} of instances")
    args.out.mkdir(parents=True, exist_ok=True)
    per_instance = [{"name": r.name, "target": r.target, "steps": r.steps,
                     "best_step_config": r.best_step_config} for r in results]
    (args.out / "nmf_learned_vs_handmade.json").write_text(
        json.dumps({"summary": summary, "instances": per_instance}, indent=2) + "\n")
    plot_instance(results[0], args.out / "nmf_instance0.png")
    plot_ratio_histogram(results, args.out / "nmf_ratio_histogram.png")
    console.print(f"wrote {args.out}/nmf_learned_vs_handmade.json and two PNGs "
                  f"({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
