"""``learnlr rl train``, ``learnlr rl train-residual`` and ``learnlr rl eval``.

Exit codes: 0 success, 2 bad usage (one line on stderr), 130 interrupted (Ctrl-C; a training
command first saves the actor to ``OUT.partial``, see :mod:`learnlr.rl.partial`).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from learnlr.cli_args import output_file, output_folder, positive_int, seed_int

__all__ = ["register"]

INTERRUPTED = 130  # as `learnlr bench`: 128 + SIGINT, what a shell reports for a Ctrl-C'd command
PARTIAL_HELP = ("; while PPO runs, OUT.partial.safetensors and OUT.partial.json hold the actor "
                "after every PPO update (kept on Ctrl-C, removed at the end)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rl train``, ``rl train-residual`` and ``rl eval`` to the ``learnlr`` command."""
    from learnlr.rl.env import REWARDS
    from learnlr.rl.training import TrainConfig

    rl = subparsers.add_parser("rl", help="train / evaluate RL learning-rate policies")
    rl_sub = rl.add_subparsers(dest="rl_command", metavar="ACTION")
    rl_sub.required = True

    train = rl_sub.add_parser("train", help="train a PPO policy on NMF instances")
    defaults = TrainConfig()
    train.add_argument("--timesteps", type=positive_int, default=defaults.timesteps,
                       help="PPO environment steps (default %(default)s)")
    train.add_argument("--seed", type=seed_int, default=defaults.seed,
                       help="seed, in [0, 2**32) (default %(default)s)")
    train.add_argument("--n-envs", type=positive_int, default=defaults.n_envs,
                       help="parallel environments (default %(default)s)")
    train.add_argument("--n-steps", type=positive_int, default=defaults.n_steps,
                       help="PPO rollout length per environment (default %(default)s)")
    train.add_argument("--reward", choices=REWARDS, default=defaults.reward,
                       help="NMF reward: log_decrease (final loss), area (area under the "
                            "log-loss curve) or area_final (their sum) (default %(default)s)")
    train.add_argument("--gamma", type=float, default=defaults.gamma,
                       help="PPO discount factor (default %(default)s)")
    train.add_argument("--max-change", type=float, default=math.exp(defaults.max_log_change),
                       help="largest LR factor per decision, > 1 (default %(default).1f)")
    train.add_argument("--bc", type=positive_int, default=None, metavar="N",
                       help="warm-start by behaviour cloning, then fine-tune with PPO: NMF, the "
                            "best hand-made schedule on N training instances; benchmark "
                            "workloads (needs --bc-store), the N best runs per workload")
    train.add_argument("--bc-store", type=Path, default=None, metavar="STORE",
                       help="benchmark workloads: the experiment store (runs.sqlite) whose best "
                            "runs --bc clones")
    train.add_argument("--workloads", default="nmf", metavar="NAMES",
                       help="'nmf' (default) or comma-separated benchmark workloads, e.g. "
                            "digits-cnn,longtail-digits: one training run per episode")
    train.add_argument("--optimizers", default="sgd,adamw", metavar="NAMES",
                       help="benchmark workloads: comma-separated optimizer columns drawn per "
                            "episode (default %(default)s)")
    train.add_argument("--episode-steps", type=positive_int, default=None, metavar="N",
                       help="benchmark workloads: optimizer steps per episode (default: each "
                            "workload's quick-suite budget)")
    train.add_argument("--base-lrs", type=Path, default=None, metavar="STORE",
                       help="benchmark workloads: take each (workload, optimizer) base LR from "
                            "this benchmark store (runs.sqlite of `learnlr bench --suite quick`); "
                            "default: the centre of the suite's LR grid")
    train.add_argument("--init", default=None, metavar="POLICY",
                       help="warm start the actor from a policy: a shipped name ('nmf') or a "
                            "path stem (fine-tuning)")
    train.add_argument("--log-std-init", type=float, default=defaults.log_std_init,
                       help="initial log std of the Gaussian action (default %(default)s)")
    train.add_argument("--out", type=output_file, required=True,
                       help="path stem: writes OUT.safetensors and OUT.json" + PARTIAL_HELP)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_interruptible("rl train")(_train))

    _register_residual(rl_sub)

    ev = rl_sub.add_parser("eval", help="learned vs hand-made schedules on held-out instances")
    ev.add_argument("--policy", default="nmf",
                    help="'nmf' (the shipped policy) or a path stem of a saved policy")
    ev.add_argument("--instances", type=positive_int, default=20,
                    help="held-out NMF instances (default %(default)s)")
    ev.add_argument("--budget", type=positive_int, default=defaults.budget_steps,
                    help="SGD steps per run (default %(default)s)")
    ev.add_argument("--plots", type=output_folder, default=None,
                    help="folder for PNG plots (first instance + ratio histogram)")
    ev.add_argument("--json", type=output_file, default=None,
                    help="also write the summary as JSON here (the table shows its main rows)")
    ev.set_defaults(func=_interruptible("rl eval")(_eval))


def _interruptible(name: str) -> Callable[[Callable[[argparse.Namespace], int]],
                                          Callable[[argparse.Namespace], int]]:
    """Ctrl-C ends ``learnlr <name>`` with one line and exit code 130, never a traceback; when
    PPO was running, the line says where the actor was saved."""

    def wrap(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except KeyboardInterrupt as exc:
                print(f"\nlearnlr {name}: {_interrupted(exc)}", file=sys.stderr)
                return INTERRUPTED

        return run

    return wrap


def _interrupted(exc: KeyboardInterrupt) -> str:
    """What was kept: a Ctrl-C during PPO is a TrainingInterrupted (which can only come from
    learnlr.rl.partial once it is imported: no import here, SB3 is slow to load)."""
    partial = sys.modules.get("learnlr.rl.partial")
    if partial is None or not isinstance(exc, partial.TrainingInterrupted):
        return "interrupted"
    if exc.path is None:
        return f"interrupted at {exc.timesteps} timesteps"
    from learnlr.rl.policy import policy_files

    weights, meta = policy_files(exc.path)
    return (f"interrupted at {exc.timesteps} timesteps; partial policy saved to {weights} and "
            f"{meta}")


def _finish(network: Any, out: Path) -> None:
    """Write the trained policy to ``out``, then drop the partial one it supersedes."""
    from learnlr.rl.partial import partial_path
    from learnlr.rl.policy import policy_files, save_policy

    weights, meta = save_policy(network, out)
    for path in policy_files(partial_path(out)):
        path.unlink(missing_ok=True)
    print(f"wrote {weights} and {meta}")


def _log_change(factor: float) -> float:
    if not (1 < factor <= math.exp(5)):
        raise ValueError(f"--max-change must be in (1, {math.exp(5):.0f}], got {factor}")
    return math.log(factor)


def _train(args: argparse.Namespace) -> int:
    from learnlr.rl.partial import partial_path
    from learnlr.rl.training import TrainConfig, check_warm_start, train_policy

    try:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
        base_lrs = (_store_base_lrs(args.base_lrs, workloads, optimizers)
                    if args.base_lrs is not None else {})
        config = TrainConfig(timesteps=args.timesteps, seed=args.seed, n_envs=args.n_envs,
                             n_steps=args.n_steps,
                             batch_size=min(TrainConfig().batch_size, args.n_steps * args.n_envs),
                             reward=args.reward, gamma=args.gamma,
                             max_log_change=_log_change(args.max_change),
                             workloads=workloads, optimizers=optimizers,
                             episode_steps=args.episode_steps, base_lrs=base_lrs,
                             log_std_init=args.log_std_init)
        if args.bc is not None and config.uses_benchmark_workloads and args.bc_store is None:
            raise ValueError("--bc with benchmark workloads needs --bc-store STORE")
        if args.bc_store is not None and (args.bc is None or not config.uses_benchmark_workloads):
            raise ValueError("--bc-store needs --bc N and benchmark --workloads")
        if args.bc_store is not None and not args.bc_store.is_file():
            raise ValueError(f"--bc-store: {str(args.bc_store)!r} is not a file")
        if args.bc is not None and args.init is not None:
            raise ValueError("--bc and --init both set the warm start: pass one of them")
        init = None
        if args.init is not None:
            from learnlr.rl.policy import load_policy
            from learnlr.rl.scheduler import PRETRAINED, pretrained_path

            init = load_policy(pretrained_path(args.init) if args.init in PRETRAINED
                               else Path(args.init))
            try:  # here, not after PPO is built: a residual policy sees other observations
                check_warm_start(init, config)
            except ValueError as exc:
                raise ValueError(f"--init {args.init}: {exc}") from None
    except (ValueError, OSError) as exc:
        print(f"learnlr rl train: {exc}", file=sys.stderr)
        return 2
    # Rebuilt from the parsed options (not sys.argv) so it is right when main() is called
    # programmatically too; stored in the policy JSON as the command that retrains it.
    command = shlex.join(["learnlr", "rl", "train", "--timesteps", str(args.timesteps), "--seed",
                          str(args.seed), "--n-envs", str(args.n_envs), "--n-steps",
                          str(args.n_steps), "--reward", args.reward, "--gamma", str(args.gamma),
                          "--max-change", str(args.max_change)]
                         + (["--bc", str(args.bc)] if args.bc else [])
                         + (["--bc-store", str(args.bc_store)] if args.bc_store else [])
                         + _workload_options(args) + ["--out", str(args.out)])
    warm = init
    if args.bc is not None:
        from learnlr.rl.cloning import (
            behaviour_clone,
            best_handmade_trajectories,
            best_store_trajectories,
        )

        if args.bc_store is not None:
            trajectories = [t for w in workloads
                            for t in best_store_trajectories(args.bc_store, workload=w,
                                                             best=args.bc)]
            if not trajectories:
                print(f"learnlr rl train: no finished runs of {workloads} in {args.bc_store}",
                      file=sys.stderr)
                return 2
        else:
            trajectories = best_handmade_trajectories(args.bc, budget=config.budget_steps,
                                                      seed=args.seed,
                                                      progress=not args.no_progress)
        warm = behaviour_clone(trajectories, config.policy_config(), seed=args.seed)
    network = train_policy(config, progress=not args.no_progress, warm_start=warm,
                           command=command, partial=partial_path(args.out))
    _finish(network, args.out)
    return 0


def _workload_options(args: argparse.Namespace) -> list[str]:
    """The non-default deep-workload options of ``rl train``, for the recorded command."""
    out: list[str] = []
    if args.workloads != "nmf":
        out += ["--workloads", args.workloads, "--optimizers", args.optimizers]
        if args.episode_steps is not None:
            out += ["--episode-steps", str(args.episode_steps)]
        if args.base_lrs is not None:
            out += ["--base-lrs", str(args.base_lrs)]
    if args.init is not None:
        out += ["--init", args.init]
    if args.log_std_init != -0.5:
        out += ["--log-std-init", str(args.log_std_init)]
    return out


def _store_base_lrs(store_path: Path, workloads: list[str],
                    optimizers: list[str]) -> dict[str, float]:
    """``"workload/optimizer" -> base LR`` chosen by the quick suite's protocol in a store."""
    from learnlr.bench.store import ExperimentStore
    from learnlr.bench.workloads import WORKLOADS

    if not store_path.is_file():
        raise ValueError(f"--base-lrs: {str(store_path)!r} is not a file")
    out: dict[str, float] = {}
    with ExperimentStore(store_path, readonly=True) as store:
        for w in workloads:
            if w not in WORKLOADS:
                continue  # TrainConfig reports unknown names
            for o in optimizers:
                lr = store.base_lr(w, o, WORKLOADS[w].budget_steps["quick"])
                if lr is not None:
                    out[f"{w}/{o}"] = lr
    return out


def _eval(args: argparse.Namespace) -> int:
    from rich.progress import track

    from learnlr.rl.evaluation import compare_on_instance, held_out_instances, summarize_instances
    from learnlr.rl.policy import load_policy
    from learnlr.rl.scheduler import PRETRAINED, pretrained_path

    try:
        path = pretrained_path(args.policy) if args.policy in PRETRAINED else Path(args.policy)
        policy = load_policy(path)
        if policy.config.kind != "direct":  # a residual policy needs its base schedule
            raise ValueError(f"--policy {args.policy}: rl eval runs policies that set the NMF LR "
                             f"themselves (kind 'direct', e.g. 'nmf'), got kind "
                             f"{policy.config.kind!r}")
    except ValueError as exc:
        print(f"learnlr rl eval: {exc}", file=sys.stderr)
        return 2
    instances = held_out_instances(args.instances)
    results = [compare_on_instance(inst, policy, budget=args.budget)
               for inst in track(instances, description="held-out instances")]
    summary = summarize_instances(results)
    _print_summary(summary, args.budget)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.plots is not None:
        from learnlr.rl.plots import plot_instance, plot_ratio_histogram

        print(plot_instance(results[0], args.plots / "rl_vs_handmade_instance0.png"))
        print(plot_ratio_histogram(results, args.plots / "rl_ratio_histogram.png"))
    return 0


def _print_summary(summary: dict, budget: int) -> None:
    """The held-out comparison as a table (like ``learnlr bench``), then the ratio lines."""
    from rich.console import Console
    from rich.table import Table

    wins = summary.get("rl_win_rate", {})
    table = Table(title=f"steps to target on {summary['instances']} held-out NMF instances",
                  caption=f"{budget + 1} = target not reached in the budget of {budget} steps; "
                          "step = best of the step-decay grid per instance")
    for column in ("schedule", "median steps", "diverged", "rl faster on"):
        table.add_column(column, justify="left" if column == "schedule" else "right")
    for name, steps in summary["median_steps"].items():
        diverged = summary["divergences"].get(name)
        win = wins.get(name)
        table.add_row(name, f"{steps:g}", "-" if diverged is None else str(diverged),
                      "-" if win is None else f"{100 * win:.0f}%")
    console = Console()
    if not console.is_terminal:  # piped: rich would assume 80 columns
        console = Console(width=120)
    console.print(table)
    if "median_ratio_rl_over_best_step" in summary:
        print(f"median steps ratio rl / best step decay: "
              f"{summary['median_ratio_rl_over_best_step']:.2f} "
              f"({100 * summary['fraction_ratio_le_goal']:.0f}% of instances <= 0.7)")
    if "best_fixed_step_config" in summary:
        print(f"best single step-decay configuration: {summary['best_fixed_step_config']}")


def _register_residual(rl_sub: argparse._SubParsersAction) -> None:
    from learnlr.rl.residual import RESIDUAL_BASES
    from learnlr.rl.residual_training import ResidualTrainConfig

    d = ResidualTrainConfig(workloads=["digits-cnn"])
    res = rl_sub.add_parser(
        "train-residual", help="train a residual policy over GreedyLR on benchmark workloads",
        description="PPO learns a correction of the budget-aware GreedyLR (--base), acting "
                    "after each evaluation; each episode's reward is its final validation loss "
                    "against the base's cell of the same workload, optimizer, seed and LR "
                    "track, read from the benchmark store (missing base cells are computed and "
                    "stored there once).")
    res.add_argument("--store", type=Path, required=True, metavar="DIR",
                     help="benchmark folder (runs.sqlite) of the quick suite: its tuned base LRs "
                          "and the base runs")
    res.add_argument("--workloads", required=True, metavar="NAMES",
                     help="comma-separated benchmark workloads to train on")
    res.add_argument("--optimizers", default=",".join(d.optimizers), metavar="NAMES",
                     help="comma-separated optimizer columns (default %(default)s)")
    res.add_argument("--lr-scales", default=",".join(f"{s:g}" for s in d.lr_scales),
                     metavar="SCALES", help="LR tracks to train on (default %(default)s)")
    res.add_argument("--seeds", type=positive_int, default=d.seeds,
                     help="training seeds per cell, from --first-seed (default %(default)s)")
    res.add_argument("--first-seed", type=seed_int, default=d.first_seed,
                     help="first training seed; keep clear of the bench's 0.. (default "
                          "%(default)s)")
    res.add_argument("--timesteps", type=positive_int, default=d.timesteps,
                     help="PPO decisions (default %(default)s)")
    res.add_argument("--workers", type=positive_int, default=d.n_envs,
                     help="parallel environments and base-run workers (default %(default)s)")
    res.add_argument("--seed", type=seed_int, default=d.seed,
                     help="PPO seed, in [0, 2**32) (default %(default)s)")
    res.add_argument("--suite", default=d.suite, choices=("tiny", "quick", "full"),
                     help="budgets and base-LR protocol of this bench suite (default "
                          "%(default)s)")
    res.add_argument("--base", default=d.base, choices=RESIDUAL_BASES,
                     help="the schedule corrected: greedy_step (GreedyLR per step) or "
                          "greedy_eval_budget (EvalGreedyLR) (default %(default)s)")
    res.add_argument("--both-ways", action="store_true",
                     help="let the correction raise GreedyLR's LR too (default: only lower it; "
                          "GreedyLR climbs by itself)")
    res.add_argument("--max-change", type=float, default=math.exp(d.max_log_change),
                     help="largest correction factor, > 1 (default %(default)g)")
    res.add_argument("--bc", action="store_true",
                     help="warm start: clone, from the store's finished cells of these "
                          "workloads, the correction that turns the base into the best "
                          "schedule of each cell; then PPO")
    res.add_argument("--out", type=output_file, required=True,
                     help="path stem: writes OUT.safetensors and OUT.json" + PARTIAL_HELP)
    res.add_argument("--no-progress", action="store_true", help="no progress bar")
    res.set_defaults(func=_interruptible("rl train-residual")(_train_residual))


def _train_residual(args: argparse.Namespace) -> int:
    from learnlr.errors import UserError
    from learnlr.rl.partial import partial_path
    from learnlr.rl.residual_training import ResidualTrainConfig, base_episodes, train_residual

    try:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
        try:
            scales = [float(x) for x in args.lr_scales.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--lr-scales must be comma-separated numbers > 0, got "
                             f"{args.lr_scales!r}") from None
        from learnlr.bench.schedules import OPTIMIZERS
        from learnlr.bench.workloads import WORKLOADS

        for name in workloads:
            if name not in WORKLOADS:
                raise ValueError(f"--workloads: {name!r} is unknown; valid workloads: "
                                 f"{sorted(WORKLOADS)}")
        for name in optimizers:
            if name not in OPTIMIZERS:
                raise ValueError(f"--optimizers: {name!r} is unknown; valid: {sorted(OPTIMIZERS)}")
        config = ResidualTrainConfig(workloads=workloads, optimizers=optimizers,
                                     lr_scales=scales, seeds=args.seeds,
                                     first_seed=args.first_seed, timesteps=args.timesteps,
                                     n_envs=args.workers, seed=args.seed, suite=args.suite,
                                     max_log_change=_log_change(args.max_change),
                                     lower_only=not args.both_ways, base=args.base)
        episodes, computed = base_episodes(config, args.store, workers=args.workers)
        warm = None
        if args.bc:
            from learnlr.rl.cloning import fit_actor
            from learnlr.rl.residual_training import clone_targets

            obs, actions, used = clone_targets(config, args.store)
            warm = fit_actor(obs, actions, config.policy_config(), seed=args.seed)
            print(f"cloned {len(obs)} decisions of {used} stored cells")
    except (ValueError, UserError) as exc:
        print(f"learnlr rl train-residual: {exc}", file=sys.stderr)
        return 2
    print(f"{len(episodes)} training cells; {computed} base cells computed now, the rest read "
          f"from {args.store}")
    command = shlex.join(["learnlr", "rl", "train-residual", "--store", str(args.store),
                          "--workloads", ",".join(workloads), "--optimizers",
                          ",".join(optimizers), "--lr-scales", args.lr_scales, "--seeds",
                          str(args.seeds), "--first-seed", str(args.first_seed),
                          "--timesteps", str(args.timesteps), "--workers", str(args.workers),
                          "--seed", str(args.seed), "--suite", args.suite,
                          "--max-change", f"{args.max_change:g}", "--base", args.base,
                          "--out", str(args.out)]
                         + (["--bc"] if args.bc else [])
                         + (["--both-ways"] if args.both_ways else []))
    network = train_residual(config, episodes, progress=not args.no_progress, command=command,
                             warm_start=warm, partial=partial_path(args.out))
    _finish(network, args.out)
    return 0
