"""Per-call ``step()`` cost of learnlr.GreedyLR vs torch ReduceLROnPlateau and transformers.GreedyLR.

Measured side by side in one process, interleaved round by round (so machine noise hits all three
alike), on the same metric sequence: a noisy decreasing training loss with plateaus, so every
scheduler really makes decisions. Prints the median per-call time and the ratios; the goal is
learnlr <= 1.0x both peers.

    .venv/bin/python benchmarks/step_overhead.py [--calls 20000] [--rounds 15] [--tensor]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import torch
import transformers

from learnlr import GreedyLR


def metric_sequence(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        trend = 2.0 * math.exp(-i / (n / 4)) + 0.3 * (1 + math.sin(i / 500))
        out.append(trend + rng.gauss(0, 0.05))
    return out


def make_optimizer(groups: int) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(4))], "lr": 1e-3} for _ in range(groups)]
    return torch.optim.AdamW(params)


def builders(window: int, calls: int):
    return {
        "learnlr.GreedyLR": lambda opt: GreedyLR(opt, window=window, min_lr=1e-5, max_lr=1e-2),
        # The budget-aware default with the envelope on (warmup 5 %, anneal the last 20 %).
        "learnlr.GreedyLR(total_steps)": lambda opt: GreedyLR(
            opt, total_steps=calls, warmup_steps=calls // 20, window=window, min_lr=1e-5,
            max_lr=1e-2),
        "torch.ReduceLROnPlateau": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.95, patience=10
        ),
        f"transformers.GreedyLR(smooth, window_size={window})": lambda opt: transformers.GreedyLR(
            opt, smooth=True, window_size=window, min_lr=1e-5, max_lr=1e-2
        ),
    }


def time_one(build, metrics, groups: int) -> float:
    sched = build(make_optimizer(groups))
    step = sched.step
    t0 = time.perf_counter()
    for m in metrics:
        step(m)
    return (time.perf_counter() - t0) / len(metrics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--tensor", action="store_true", help="pass 0-d CPU tensors instead of floats")
    args = ap.parse_args()
    metrics = metric_sequence(args.calls)
    if args.tensor:
        metrics = [torch.tensor(m) for m in metrics]
    named = builders(args.window, args.calls)
    times: dict[str, list[float]] = {name: [] for name in named}
    for build in named.values():  # warm-up
        time_one(build, metrics[:2000], args.groups)
    for r in range(args.rounds):
        order = list(named.items())
        random.Random(r).shuffle(order)  # interleave, in a different order each round
        for name, build in order:
            times[name].append(time_one(build, metrics, args.groups))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ours = {n: t for n, t in med.items() if n.startswith("learnlr")}
    kind = "0-d tensor" if args.tensor else "float"
    print(f"step() per call, median of {args.rounds} interleaved rounds x {args.calls} calls, "
          f"{args.groups} param groups, metric as {kind}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"{'scheduler':<48} {'ns/call':>9}  " + "  ".join(f"{n[8:]:>24}" for n in ours))
    for name, t in med.items():
        ratios = "  ".join(f"{o / t:23.2f}x" for o in ours.values())
        print(f"{name:<48} {t * 1e9:9.0f}  {ratios}")
    print("columns: learnlr's time / this row's (< 1: learnlr is faster)")


if __name__ == "__main__":
    main()
