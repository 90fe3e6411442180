"""``learnlr nmf solve``: projected SGD on one NMF instance with a chosen LR schedule."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from learnlr.cli_args import output_file, positive_float, positive_int, seed_int
from learnlr.nmf.schedules import NMF_SCHEDULES, nmf_schedule

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nmf solve`` to the ``learnlr`` command."""
    nmf = subparsers.add_parser("nmf", help="stochastic NMF with a learning-rate stability bound")
    nmf_sub = nmf.add_subparsers(dest="nmf_command", metavar="ACTION")
    nmf_sub.required = True
    solve = nmf_sub.add_parser(
        "solve", help="run projected SGD on one instance",
        description="Projected SGD on 0.5||X - WH||^2; the LR is capped at 0.95x the stability "
        "bound every step. Problems: planted:MxN (synthetic) or digits, breast-cancer, wine.")
    solve.add_argument("--problem", default="planted:40x30",
                       help="planted:MxN or a real matrix name (default %(default)s)")
    solve.add_argument("--rank", type=positive_int, default=4, help="k (default %(default)s)")
    solve.add_argument("--noise", type=float, default=0.05,
                       help="planted data noise (default %(default)s)")
    solve.add_argument("--schedule", default="cosine",
                       help=f"one of {', '.join(NMF_SCHEDULES)} (default %(default)s)")
    solve.add_argument("--lr-fraction", type=positive_float, default=None,
                       help="initial LR as a fraction of the initial bound (default: 1.0, "
                            "0.5 for greedy)")
    solve.add_argument("--steps", type=positive_int, default=500, help="SGD steps")
    solve.add_argument("--oracle", default="additive", choices=("exact", "minibatch", "additive"),
                       help="gradient noise model (default %(default)s)")
    solve.add_argument("--sigma", type=float, default=0.1, help="additive noise sigma")
    solve.add_argument("--batch-fraction", type=float, default=0.25,
                       help="mini-batch fraction of rows/columns")
    solve.add_argument("--clip", type=positive_float, default=None,
                       help="project entries onto [0, CLIP] (default: [0, inf))")
    solve.add_argument("--seed", type=seed_int, default=0,
                       help="seed of init and noise, in [0, 2**32) (default %(default)s)")
    solve.add_argument("--plot", type=output_file, default=None, help="write a loss/LR plot (PNG)")
    solve.add_argument("--json", type=output_file, default=None, help="write the history as JSON")
    solve.add_argument("--no-progress", action="store_true", help="no progress bar")
    solve.set_defaults(func=_solve)


def _solve(args: argparse.Namespace) -> int:
    from learnlr.nmf.problems import make_problem
    from learnlr.nmf.solver import GradientOracle, solve

    try:
        schedule = nmf_schedule(args.schedule, args.steps)
        problem = make_problem(args.problem, args.rank, noise=args.noise, seed=args.seed)
        oracle = GradientOracle(args.oracle, sigma=args.sigma, batch_fraction=args.batch_fraction)
    except ValueError as exc:
        print(f"learnlr nmf solve: {exc}", file=sys.stderr)
        return 2
    lr_fraction = args.lr_fraction if args.lr_fraction is not None else schedule.lr_fraction
    from rich.progress import Progress

    with Progress(disable=args.no_progress, transient=True) as progress:
        task = progress.add_task(f"{problem.name} [{args.schedule}]", total=args.steps)
        run = solve(problem, lr_fraction=lr_fraction, steps=args.steps,
                    scheduler_factory=schedule.factory, oracle=oracle,
                    clip=args.clip, seed=args.seed,
                    callback=lambda step, rec: progress.advance(task))
    summary = {
        "problem": problem.name,
        "provenance": problem.provenance,
        "schedule": args.schedule,
        "initial_loss": run.losses[0],
        "final_loss": run.losses[-1],
        "diverged": run.diverged,
        "final_lr": run.lrs[-1],
        "final_bound": run.bounds[-1],
    }
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "losses": run.losses, "lrs": run.lrs,
                                         "bounds": run.bounds}) + "\n")
    if args.plot is not None:
        _plot(run, problem.name, args.schedule, args.plot)
        print(f"wrote {args.plot}")
    return 1 if run.diverged else 0


def _plot(run: Any, title: str, schedule: str, path: Path) -> None:
    from learnlr.plotting import new_figure, save_figure

    fig, (ax1, ax2) = new_figure(2, 1, figsize=(7, 5), sharex=True)
    ax1.semilogy(run.losses)
    ax1.set_ylabel("loss")
    ax1.set_title(f"{title} [{schedule}]")
    ax2.semilogy(run.lrs, label="lr used")
    ax2.semilogy(run.bounds, label="stability bound", ls="--")
    ax2.set_xlabel("SGD step")
    ax2.legend()
    save_figure(fig, path)
