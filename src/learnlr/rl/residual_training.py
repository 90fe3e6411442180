"""Train a residual policy over ``greedy_step`` (or ``greedy_eval_budget``) from the experiment
store (``learnlr[rl]``).

The store is the agent's memory. The base runs that pair every episode's reward are ordinary
benchmark cells (the base schedule, training seeds ``first_seed ..``), computed through
:func:`learnlr.bench.benchmark.run_benchmark`: a cell the store already holds is read, never
recomputed, so a second training run on the same store only trains. The base LRs are the
store's tuned ones (the bench's protocol), so the LR tracks mean what they mean in the report.

Training seeds (default 1000-1002) are disjoint from the benchmark's evaluation seeds (0, 1, 2).
PPO is stable-baselines3's, on ``n_envs`` environments in parallel processes
(``SubprocVecEnv``); the actor is exported to a :class:`~learnlr.rl.policy.PolicyNetwork`
(safetensors + JSON, kind ``"greedy_residual"``); SB3's pickled ``.zip`` is never written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learnlr.nmf.problems import check_seed
from learnlr.rl.policy import PolicyConfig, PolicyNetwork
from learnlr.rl.residual import check_base
from learnlr.rl.residual_env import BASE_SCHEDULE, ResidualEpisode
from learnlr.rl.training import PPOSettings, check_positive_int

__all__ = ["ResidualTrainConfig", "base_episodes", "clone_targets", "train_residual"]


@dataclass(kw_only=True)
class ResidualTrainConfig(PPOSettings):
    """What a residual policy over GreedyLR is trained on, and PPO's settings (from
    :class:`~learnlr.rl.training.PPOSettings`, with this trainer's defaults)."""

    workloads: list[str]
    """Benchmark workloads whose cells are the episodes (the training fold)."""
    optimizers: list[str] = field(default_factory=lambda: ["sgd", "adamw"])
    lr_scales: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    """LR tracks the episodes start from (x the tuned base LR)."""
    seeds: int = 3
    first_seed: int = 1000
    """Episode seeds are ``first_seed .. first_seed + seeds - 1`` (never the bench's 0, 1, 2)."""
    suite: str = "quick"
    """Budgets, evaluation interval and base-LR protocol of this suite."""
    timesteps: int = 4096
    """PPO decisions in total (an episode has one per evaluation, 10-20)."""
    n_envs: int = 2
    n_steps: int = 64
    batch_size: int = 64
    gamma: float = 1.0
    """The reward comes at the end only: undiscounted."""
    log_std_init: float = -1.0
    max_log_change: float = math.log(4.0)
    """The correction is at most 4x (the shipped ``deep`` policy's setting)."""
    divergence_penalty: float = 2.0
    lower_only: bool = True
    """The correction can only lower GreedyLR's LR (GreedyLR already climbs by itself; raising
    on top of its climb diverged runs in the leave-workloads-out study, docs/rl.md)."""
    base: str = BASE_SCHEDULE
    """The benchmark schedule corrected (:data:`learnlr.rl.residual.RESIDUAL_BASES`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_base(self.base)
        check_positive_int("seeds", self.seeds)
        check_seed("first_seed", self.first_seed)
        if not self.workloads:
            raise ValueError("workloads must name at least one benchmark workload")
        if any(not (s > 0 and math.isfinite(s)) for s in self.lr_scales) or not self.lr_scales:
            raise ValueError(f"lr_scales must be finite values > 0, got {self.lr_scales}")
        if not (0 < self.max_log_change <= 5):
            raise ValueError(f"max_log_change must be in (0, 5], got {self.max_log_change}")

    def policy_config(self, training: dict[str, Any] | None = None) -> PolicyConfig:
        from learnlr.rl.features import GREEDY_RESIDUAL_FEATURE_NAMES

        return PolicyConfig(hidden_sizes=list(self.hidden_sizes), activation="tanh",
                            max_log_change=self.max_log_change,
                            feature_names=list(GREEDY_RESIDUAL_FEATURE_NAMES),
                            kind="greedy_residual", lower_only=self.lower_only, base=self.base,
                            workload=",".join(self.workloads),
                            training=training or {})


def base_episodes(config: ResidualTrainConfig, store_dir: str | Path, *, workers: int = 1,
                  progress: Any = None) -> tuple[list[ResidualEpisode], int]:
    """The episodes of ``config`` with their base runs' final validation losses.

    Missing base cells are computed (and stored) by the benchmark itself; returns the episodes
    and how many cells this call computed (0 on a second call with the same store).
    """
    from learnlr.bench.benchmark import BenchRequest, run_benchmark
    from learnlr.bench.store import STORE_FILENAME, ExperimentStore
    from learnlr.bench.suites import SUITES

    if config.suite not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {config.suite!r}")
    suite = dataclasses.replace(SUITES[config.suite], lr_scales=tuple(config.lr_scales))
    request = BenchRequest(suite=suite, out_dir=Path(store_dir),
                           workloads=tuple(config.workloads),
                           optimizers=tuple(config.optimizers), schedules=(config.base,),
                           seeds=config.seeds, first_seed=config.first_seed, workers=workers,
                           purpose="rl-base")
    plan = run_benchmark(request, progress) if progress is not None else run_benchmark(request)
    episodes = []
    # Stored as "rl-base", not "main": `learnlr report` on this store keeps showing the
    # benchmark's own cells only.
    with ExperimentStore(Path(store_dir) / STORE_FILENAME, readonly=True) as store:
        for cell in plan.main:
            result = store.get_result(cell)
            if result is None:
                raise RuntimeError(f"base cell {cell.hash[:12]} is missing after the run")
            final = result.get("final_val_loss")
            episodes.append(ResidualEpisode(
                cell.workload, cell.optimizer, cell.seed, cell.base_lr, cell.lr_scale,
                cell.budget_steps, cell.eval_every,
                None if result.get("status") != "ok" or final is None else float(final)))
    return episodes, plan.computed


CLONE_RIVALS = ("constant", "step", "linear", "cosine", "wsd")
"""The fixed schedules whose best run per cell (or the base's own) the behaviour-cloning targets
imitate (those that run on every LR track)."""


def clone_targets(config: ResidualTrainConfig, store_dir: str | Path
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Behaviour-cloning data from the store: per finished benchmark cell of the training
    workloads, the correction that would turn the base's LR (``config.base``) into the LR of the
    best schedule of that cell (same workload, optimizer, seed and LR track; the base included).

    Observations are rebuilt along the stored base run at its evaluations, as
    :meth:`GreedyResidual.observation` sees them (the store has no gradient norms: that feature
    is 0), with the previous target as the current correction. The target of a decision is the
    mean of ``log(best LR / greedy LR)`` until the next evaluation, over ``max_log_change``,
    clipped to [-1, 1]. Returns (observations, actions, cells used).
    """
    from learnlr.bench.store import STORE_FILENAME, ExperimentStore

    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    with ExperimentStore(Path(store_dir) / STORE_FILENAME, readonly=True) as store:
        for cell in store.cells(purpose="main"):
            c = cell.config
            if (c["workload"] in config.workloads and c["optimizer"] in config.optimizers
                    and c["schedule"] in CLONE_RIVALS + (config.base,)
                    and cell.results.get("status") == "ok"
                    and float(c.get("lr_scale", 1.0)) in config.lr_scales):
                key = (c["workload"], c["optimizer"], c["seed"], c.get("lr_scale", 1.0))
                groups.setdefault(key, {})[c["schedule"]] = cell
        obs: list[np.ndarray] = []
        actions: list[float] = []
        used = 0
        for group in groups.values():
            if config.base not in group or len(group) < 2:
                continue  # no rival of the same cell: nothing to imitate
            best = min(group.values(), key=lambda cell: cell.results["final_val_loss"])
            base = store.trajectory(group[config.base].hash)
            target_lrs = store.trajectory(best.hash).lr
            if _clone_cell(base, target_lrs, config.max_log_change, obs, actions,
                           high=0.0 if config.lower_only else 1.0):
                used += 1
    if not obs:
        raise ValueError(f"the store in {str(store_dir)!r} has no finished {config.base} cells of "
                         f"{config.workloads} to clone from")
    return np.stack(obs), np.asarray(actions, dtype=np.float32)[:, None], used


def _clone_cell(base: Any, target_lrs: list[float], max_log_change: float,
                obs: list[np.ndarray], actions: list[float], high: float = 1.0) -> bool:
    """Append one stored run's (observation, target) pairs; False if the run is unusable."""
    from learnlr.rl.features import ObservationBuilder
    from learnlr.rl.residual import residual_observation

    losses, lrs = base.train_loss, base.lr
    total = int(base.config["budget_steps"])
    if (len(lrs) != total or len(target_lrs) != total or any(v is None for v in losses)
            or any(v is None or v <= 0 for v in list(lrs) + list(target_lrs))):
        return False
    builder = ObservationBuilder(10)
    builder.reset(losses[0], 1.0)
    initial_lr = float(base.config["base_lr"]) * float(base.config.get("lr_scale", 1.0))
    vals: list[float] = []
    action, last = 0.0, 0
    decisions = [int(e["step"]) for e in base.evals if int(e["step"]) < total]
    for k, done in enumerate(decisions):
        t = done - 1
        for loss in losses[last + 1:t + 1]:
            builder.record(loss)
        last = t
        vals.append(float(base.evals[k]["val_loss"]))
        lr_now = lrs[t + 1] * math.exp(action * max_log_change)
        obs.append(residual_observation(builder, losses[t], 1.0, lr_now, initial_lr, t / total,
                                        action, vals))
        end = decisions[k + 1] if k + 1 < len(decisions) else total
        ratios = [math.log(target_lrs[s] / lrs[s]) for s in range(t + 1, end)]
        action = min(max(sum(ratios) / len(ratios) / max_log_change, -1.0), high)
        actions.append(action)
    return True


def _make_env(episodes: list[dict[str, Any]], max_log_change: float,
              divergence_penalty: float, lower_only: bool, base: str) -> Any:
    from learnlr.rl.residual_env import ResidualWorkloadEnv

    return ResidualWorkloadEnv(episodes, max_log_change=max_log_change,
                               divergence_penalty=divergence_penalty, lower_only=lower_only,
                               base=base)


def train_residual(config: ResidualTrainConfig, episodes: list[ResidualEpisode], *,
                   progress: bool = False, command: str = "",
                   warm_start: PolicyNetwork | None = None,
                   partial: str | Path | None = None) -> PolicyNetwork:
    """PPO on ``episodes`` (parallel processes when ``n_envs > 1``), optionally from a cloned
    actor; returns the actor. With ``partial`` (a path stem) the actor is saved there after
    every PPO update and on Ctrl-C (:class:`learnlr.rl.partial.TrainingInterrupted`)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from learnlr.rl.partial import learn
    from learnlr.rl.training import load_actor_into_sb3, ppo_model

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    env_kwargs = {"episodes": [e.to_json() for e in episodes],
                  "max_log_change": config.max_log_change,
                  "divergence_penalty": config.divergence_penalty,
                  "lower_only": config.lower_only, "base": config.base}
    vec_cls = SubprocVecEnv if config.n_envs > 1 else DummyVecEnv
    vec_env = make_vec_env(_make_env, n_envs=config.n_envs, seed=config.seed,
                           env_kwargs=env_kwargs, vec_env_cls=vec_cls)
    model = ppo_model(vec_env, config, gae_lambda=1.0)
    if warm_start is not None:
        load_actor_into_sb3(model, warm_start)
    training = {
        "algorithm": f"PPO (stable-baselines3), residual over {config.base}",
        "config": asdict(config),
        "episodes": len(episodes),
        "warm_start": warm_start is not None,
        "command": command,
    }
    try:
        network = learn(model, config.timesteps,
                        lambda extra: config.policy_config({**training, **extra}),
                        partial=None if partial is None else Path(partial), progress=progress)
    except BaseException:
        _stop(vec_env)
        raise
    vec_env.close()
    return network


def _stop(vec_env: Any) -> None:
    """Close ``vec_env`` after an error or Ctrl-C without waiting on its workers: a Ctrl-C
    reaches them too (they are gone, and ``close()`` would fail on their pipes, hiding the
    cause), or one may be midway through a long training window."""
    processes = getattr(vec_env, "processes", None)
    if processes is None:  # DummyVecEnv: nothing runs elsewhere
        vec_env.close()
        return
    for process in processes:
        process.terminate()
        process.join()
    for remote in vec_env.remotes:
        remote.close()
    vec_env.closed = True
