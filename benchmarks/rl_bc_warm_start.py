"""Does a behaviour-cloning warm start help PPO? Same PPO budget, same seed, with and without.

Arms: (a) PPO from scratch, (b) BC only (clone the best hand-made run on N training instances),
(c) BC + PPO fine-tuning. Each is evaluated on the same held-out NMF instances by steps to
target (see learnlr.rl.evaluation); lower is better.

Run:  .venv/bin/python benchmarks/rl_bc_warm_start.py --timesteps 30000 --bc-instances 16 \
          --instances 20 --out bench-out/rl_bc
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from learnlr.rl.cloning import behaviour_clone, best_handmade_trajectories
from learnlr.rl.evaluation import compare_on_instance, held_out_instances, summarize_instances
from learnlr.rl.policy import save_policy
from learnlr.rl.training import TrainConfig, train_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=30_000)
    parser.add_argument("--bc-instances", type=int, default=16)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/rl_bc"))
    args = parser.parse_args(argv)
    console = Console()
    config = TrainConfig(timesteps=args.timesteps, seed=args.seed)
    timings = {}

    started = time.perf_counter()
    trajectories = best_handmade_trajectories(args.bc_instances, budget=config.budget_steps,
                                              seed=args.seed)
    cloned = behaviour_clone(trajectories, config.policy_config({"bc_only": True}),
                             seed=args.seed)
    timings["bc"] = time.perf_counter() - started
    started = time.perf_counter()
    scratch = train_policy(config, command="benchmarks/rl_bc_warm_start.py (scratch)")
    timings["ppo"] = time.perf_counter() - started
    started = time.perf_counter()
    warm = train_policy(config, warm_start=cloned, command="benchmarks/rl_bc_warm_start.py (bc)")
    timings["bc+ppo"] = time.perf_counter() - started

    arms = {"ppo (scratch)": scratch, "bc only": cloned, "bc + ppo": warm}
    slugs = {"ppo (scratch)": "ppo_scratch", "bc only": "bc_only", "bc + ppo": "bc_then_ppo"}
    args.out.mkdir(parents=True, exist_ok=True)
    instances = held_out_instances(args.instances)
    table = Table(title=f"BC warm start, {args.timesteps} PPO steps, {args.instances} held-out "
                        "instances (steps to target; lower is better)")
    for col in ("arm", "median steps (rl)", "mean steps (rl)", "median rl/best-step",
                "rl <= 0.7x best step", "rl faster than cosine"):
        table.add_column(col)
    report = {}
    for name, policy in arms.items():
        save_policy(policy, args.out / slugs[name])
        results = [compare_on_instance(inst, policy, budget=config.budget_steps)
                   for inst in instances]
        summary = summarize_instances(results)
        steps = [r.steps["rl"] for r in results]
        report[name] = summary
        table.add_row(name, f"{np.median(steps):.0f}", f"{np.mean(steps):.1f}",
                      f"{summary['median_ratio_rl_over_best_step']:.2f}",
                      f"{summary['fraction_ratio_le_goal']:.0%}",
                      f"{summary['rl_win_rate']['cosine']:.0%}")
    console.print(table)
    console.print({k: round(v, 1) for k, v in timings.items()}, "seconds")
    (args.out / "rl_bc_warm_start.json").write_text(
        json.dumps({"arms": report, "seconds": timings, "args": vars(args)}, indent=2,
                   default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
