"""Deep-network transfer: a PPO LR policy trained on some benchmark workloads, run on held-out ones.

The study of the first, *direct* deep policy (docs/rl.md, "Deep networks (transfer)"). The shipped
``deep`` policy is now the residual over GreedyLR (``benchmarks/rl_residual_folds.py --ship``);
``--ship`` here is refused so this study cannot overwrite it, and the evaluation's ``rl_deep``
column is that residual policy.

Steps (each optional, in this order):

1. ``--measure``: time each workload's optimizer step (AdamW, 1 thread) -- the basis of the
   train / held-out split (the cheap workloads train the agent, the costly ones are held out).
2. ``--train``: ``learnlr rl train`` on the TRAIN split (quick budgets, SGD + AdamW, base LRs
   from the quick suite's protocol in ``--base-lr-store``) into ``OUT/deep``.
3. ``--ship``: refused (exit 2). It used to copy ``OUT/deep`` (or ``--ship-from``) into
   ``learnlr/rl/pretrained/deep``; that file is now the residual policy.
4. Evaluation (always): the real benchmark runner (``run_benchmark``: the suite's base-LR
   protocol, then the cells) on the HELD-OUT workloads, quick budgets, SGD + AdamW,
   ``--seeds`` seeds, schedules constant, cosine, greedy_step, rl (shipped NMF policy) and
   rl_deep (shipped deep policy). The store lives in ``OUT/store-<policy sha256[:12]>``: one
   store per shipped deep policy (the cells' config hashes also include the policy digests).

Prints the final-validation-loss table and rl_deep's win rates (paired on workload, optimizer,
seed; ties within 1 % relative), writes ``OUT/rl_deep_transfer.json`` and two PNGs.

Run (as in docs/rl.md):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_deep_transfer.py --measure --seeds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

TRAIN = ("graph-nodes", "elec-forecast", "mnist1d", "reviews-imbalanced")
HELD_OUT = ("digits-cnn", "longtail-digits", "reviews-text", "char-lm")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "greedy_step", "rl", "rl_deep")
RIVALS = ("cosine", "greedy_step", "constant", "rl")
TRAIN_OPTIONS = ["--timesteps", "80000", "--seed", "0", "--n-envs", "4", "--n-steps", "256",
                 "--gamma", "0.995", "--workloads", ",".join(TRAIN), "--optimizers",
                 ",".join(OPTIMIZERS), "--log-std-init", "-1.0"]
"""The ``learnlr rl train`` options of the shipped policy (plus ``--base-lrs`` and ``--out``)."""


def measure_step_costs(steps: int = 60) -> dict[str, float]:
    """Milliseconds per optimizer step (AdamW lr 1e-3, batch + forward + backward + step)."""
    from learnlr.bench.workloads import WORKLOADS, get_workload

    torch.set_num_threads(1)
    out = {}
    for name in sorted(WORKLOADS):
        workload = get_workload(name)
        workload.setup(0)
        model = workload.make_model(0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        for phase in ("warmup", "timed"):
            start = time.perf_counter()
            for step in range(10 if phase == "warmup" else steps):
                opt.zero_grad()
                workload.loss(model, workload.batch(step, generator)).backward()
                opt.step()
        out[name] = 1000 * (time.perf_counter() - start) / steps
    return out


def policy_sha256(stem: Path) -> str:
    """sha256 of a policy's weights file."""
    from learnlr.rl.policy import policy_files

    return hashlib.sha256(policy_files(stem)[0].read_bytes()).hexdigest()


def evaluate(out: Path, workloads: tuple[str, ...], seeds: int) -> tuple[list[dict], Path]:
    """Run the held-out comparison with the benchmark runner; returns the cells and store dir."""
    from learnlr.bench.benchmark import BenchRequest, run_benchmark
    from learnlr.bench.store import ExperimentStore
    from learnlr.bench.suites import SUITES
    from learnlr.rl.scheduler import pretrained_path

    store_dir = out / f"store-{policy_sha256(pretrained_path('deep'))[:12]}"
    request = BenchRequest(suite=SUITES["quick"], out_dir=store_dir, workloads=workloads,
                           optimizers=OPTIMIZERS, schedules=SCHEDULES, seeds=seeds, workers=1)
    plan = run_benchmark(request)
    with ExperimentStore(store_dir / "runs.sqlite") as store:
        cells = []
        for c in store.cells(hashes=plan.main_hashes):
            traj = store.trajectory(c.hash)
            cells.append({**c.config, "final_val_loss": c.results["final_val_loss"],
                          "status": c.results["status"],
                          "wall_time_s": c.results["wall_time_s"],
                          "lr": [lr for lr in traj.lr]})
    base_lrs = {f"{w}/{o}": lr for (w, o), lr in plan.base_lrs.items()}
    for cell in cells:
        cell["base_lr_protocol"] = base_lrs[f"{cell['workload']}/{cell['optimizer']}"]
    return cells, store_dir


def win_rates(cells: list[dict], subject: str = "rl_deep") -> dict[str, dict[str, Any]]:
    """rl_deep vs each rival, paired on (workload, optimizer, seed), 1 % relative tie band."""
    from learnlr.bench.summary import compare

    loss = {(c["workload"], c["optimizer"], c["seed"], c["schedule"]):
            math.inf if c["final_val_loss"] is None else c["final_val_loss"] for c in cells}
    keys = sorted({k[:3] for k in loss})
    out = {}
    for rival in RIVALS:
        outcomes = [compare(loss[(*k, subject)], loss[(*k, rival)], "rel_1pct")
                    for k in keys if (*k, subject) in loss and (*k, rival) in loss]
        n = len(outcomes)
        wins = sum(o > 0 for o in outcomes)
        ties = sum(o == 0 for o in outcomes)
        out[rival] = {"wins": wins, "ties": ties, "losses": n - wins - ties, "n": n,
                      "win_rate": wins / n if n else None,
                      "as_good_or_better": (wins + ties) / n if n else None}
    return out


def table(cells: list[dict]) -> list[dict[str, Any]]:
    """Mean (over seeds) final val loss per (workload, optimizer, schedule)."""
    rows = []
    for w in dict.fromkeys(c["workload"] for c in cells):
        for o in OPTIMIZERS:
            row: dict[str, Any] = {"workload": w, "optimizer": o}
            for s in SCHEDULES:
                vals = [c["final_val_loss"] for c in cells
                        if (c["workload"], c["optimizer"], c["schedule"]) == (w, o, s)]
                if not vals:
                    continue
                row[s] = (None if any(v is None for v in vals) else statistics.fmean(vals))
                row[f"{s}_n"] = len(vals)
            rows.append(row)
    return rows


def plot(cells: list[dict], rows: list[dict], path: Path) -> Path:
    """Top: final val loss / cosine's per cell; bottom: seed-0 LR trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(r["workload"], r["optimizer"]) for r in rows]
    fig, axes = plt.subplots(2, len(pairs), figsize=(2.6 * len(pairs), 6.5), squeeze=False)
    colors = dict(zip(SCHEDULES, ("tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:red"),
                      strict=True))
    for j, (w, o) in enumerate(pairs):
        ax = axes[0][j]
        row = next(r for r in rows if (r["workload"], r["optimizer"]) == (w, o))
        ref = row.get("cosine")
        values = [(row.get(s) / ref) if (row.get(s) is not None and ref) else float("nan")
                  for s in SCHEDULES]
        ax.bar(range(len(SCHEDULES)), values, color=[colors[s] for s in SCHEDULES])
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(range(len(SCHEDULES)), SCHEDULES, rotation=60, fontsize=7)
        ax.set_title(f"{w}\n{o}", fontsize=8)
        if j == 0:
            ax.set_ylabel("final val loss / cosine")
        ax = axes[1][j]
        for s in SCHEDULES:
            for c in cells:
                if (c["workload"], c["optimizer"], c["schedule"], c["seed"]) == (w, o, s, 0):
                    ax.plot([v if v else float("nan") for v in c["lr"]], color=colors[s],
                            label=s, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=7)
        if j == 0:
            ax.set_ylabel("LR (seed 0)")
            ax.legend(fontsize=6)
    fig.suptitle("rl_deep on held-out workloads (quick budgets, base LR by the suite protocol)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true", help="time every workload's step")
    parser.add_argument("--train", action="store_true", help="train into OUT/deep first")
    parser.add_argument("--ship", action="store_true",
                        help="refused: the shipped deep policy is the residual one")
    parser.add_argument("--ship-from", type=Path, default=None,
                        help="unused since --ship is refused (kept so old commands parse)")
    parser.add_argument("--base-lr-store", type=Path, default=Path("bench-out/quick/runs.sqlite"),
                        help="bench store with the quick suite's base LRs for the TRAIN split")
    parser.add_argument("--workloads", default=",".join(HELD_OUT),
                        help="workloads to evaluate on (default: the held-out split)")
    parser.add_argument("--init", default=None,
                        help="--train: warm-start the policy from this one "
                             "(learnlr rl train --init, e.g. nmf)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out/rl_deep"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"train_workloads": list(TRAIN), "held_out_workloads": list(HELD_OUT)}

    if args.measure:
        costs = measure_step_costs()
        report["ms_per_step"] = costs
        print("ms per optimizer step (AdamW, 1 thread):")
        for name, ms in sorted(costs.items(), key=lambda kv: kv[1]):
            print(f"  {name:20s} {ms:6.2f}  {'train' if name in TRAIN else 'held-out'}")
    stem = args.out / "deep"
    train_argv = ["rl", "train", *TRAIN_OPTIONS, "--base-lrs", str(args.base_lr_store)]
    if args.init is not None:
        train_argv += ["--init", args.init]
    retrain = ("OMP_NUM_THREADS=1 learnlr " + shlex.join(train_argv)
               + f" --out {stem}")
    report["retrain_command"] = retrain
    if args.train:
        from learnlr.cli import main as learnlr_main

        started = time.perf_counter()
        code = learnlr_main([*train_argv, "--out", str(stem), "--no-progress"])
        timings["train_s"] = time.perf_counter() - started
        if code != 0:
            return code
    if args.ship:
        print("--ship: the shipped `deep` policy is the residual one; ship it with "
              "benchmarks/rl_residual_folds.py --ship", file=sys.stderr)
        return 2

    started = time.perf_counter()
    held_out = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    cells, store_dir = evaluate(args.out, held_out, args.seeds)
    timings["evaluate_s"] = time.perf_counter() - started
    rows = table(cells)
    wins = win_rates(cells)

    print(f"\nfinal val loss, mean of {args.seeds} seeds (quick budgets; store {store_dir})")
    print("| workload | optimizer | base LR | " + " | ".join(SCHEDULES) + " |")
    print("|---|---|---|" + "---|" * len(SCHEDULES))
    for r in rows:
        lr = next(c["base_lr_protocol"] for c in cells
                  if (c["workload"], c["optimizer"]) == (r["workload"], r["optimizer"]))
        print(f"| {r['workload']} | {r['optimizer']} | {lr:g} | "
              + " | ".join(_fmt(r.get(s)) for s in SCHEDULES) + " |")
    print("\nrl_deep vs rival (paired on workload, optimizer, seed; ties within 1 %)")
    print("| rival | win rate | W/T/L | as good or better |")
    print("|---|---|---|---|")
    for rival, w in wins.items():
        print(f"| {rival} | {w['win_rate']:.0%} | {w['wins']}/{w['ties']}/{w['losses']} | "
              f"{w['as_good_or_better']:.0%} |")
    from learnlr.rl.scheduler import pretrained_path

    report.update({
        "evaluated_workloads": list(held_out), "seeds": args.seeds, "suite": "quick",
        "schedules": list(SCHEDULES), "optimizers": list(OPTIMIZERS),
        "policy_sha256": policy_sha256(pretrained_path("deep")),
        "table": rows, "win_rates": wins, "timings_s": timings,
        "cells": [{k: v for k, v in c.items() if k != "lr"} for c in cells],
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_deep_transfer.py "
                   + shlex.join(argv if argv is not None else sys.argv[1:]),
    })
    json_path = args.out / "rl_deep_transfer.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print("\nwrote", json_path, plot(cells, rows, args.out / "rl_deep_transfer.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
