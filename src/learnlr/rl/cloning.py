"""Behaviour cloning: warm-start an LR policy from the LR trajectories of past good runs.

Sources of trajectories (all converted to :class:`LRTrajectory`):

- :func:`best_handmade_trajectories`: NMF runs of the hand-made schedules on *training*
  instances, keeping the best run per instance (fewest steps to target). Has the stability bound
  and gradient norms, so the cloned observations match the environment's exactly.
- :func:`best_store_trajectories`: the best runs of the benchmark's experiment store
  (``learnlr.bench.store.ExperimentStore.trajectories(best=...)``), for deep workloads. The store
  records per-step LR and training loss only, so the LR is taken relative to the run's initial
  LR and the gradient-norm feature is held at its starting value.

The actions are recovered from consecutive LRs: ``a = log(lr[t] / lr[t - K]) / max_log_change``,
clipped to [-1, 1], at the same decision points (every ``K = steps_per_action`` steps) as the
environment, and the actor is fitted by mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from learnlr.nmf.solver import NMFRun
from learnlr.rl.features import ObservationBuilder
from learnlr.rl.policy import PolicyConfig, PolicyNetwork

__all__ = [
    "LRTrajectory",
    "behaviour_clone",
    "best_handmade_trajectories",
    "best_store_trajectories",
    "clone_dataset",
    "fit_actor",
    "trajectory_from_nmf_run",
]


@dataclass
class LRTrajectory:
    """Per-step training loss and LR of one past run (optionally gradient norm and bound)."""

    losses: list[float]
    """Training loss at each step (before the step's update)."""
    lrs: list[float]
    """LR used at each step."""
    grad_norms: list[float] | None = None
    """Gradient norm at each step, if recorded."""
    bounds: list[float] | None = None
    """Stability bound at each step, if there is one; else the initial LR is the reference."""
    source: str = ""
    """Where the run came from (schedule name, store hash)."""

    def __post_init__(self) -> None:
        n = len(self.lrs)
        if n < 2 or len(self.losses) < n:
            raise ValueError(
                f"a trajectory needs >= 2 LRs and at least as many losses; got {n} LRs, "
                f"{len(self.losses)} losses"
            )
        for name in ("grad_norms", "bounds"):
            values = getattr(self, name)
            if values is not None and len(values) < n:
                raise ValueError(f"{name} must have >= {n} entries (one per LR), got {len(values)}")


def trajectory_from_nmf_run(run: NMFRun, source: str = "") -> LRTrajectory:
    """Adapter for :class:`learnlr.nmf.NMFRun`."""
    return LRTrajectory(losses=list(run.losses), lrs=list(run.lrs),
                        grad_norms=list(run.grad_norms), bounds=list(run.bounds), source=source)


def best_store_trajectories(
    store_path: str | Path, *, workload: str | None = None, best: int = 5
) -> list[LRTrajectory]:
    """The ``best`` lowest-final-validation-loss runs of a benchmark experiment store."""
    from learnlr.bench.store import ExperimentStore

    out = []
    with ExperimentStore(store_path, readonly=True) as store:
        for t in store.trajectories(workload=workload, best=best):
            losses = [float("nan") if v is None else float(v) for v in t.train_loss]
            if len(t.lr) >= 2:
                lrs = [float("nan") if v is None else float(v) for v in t.lr]
                out.append(LRTrajectory(losses=losses, lrs=lrs,
                                        source=f"store:{t.hash}"))
    return out


def best_handmade_trajectories(
    count: int, *, budget: int = 400, seed: int = 0, progress: bool = False
) -> list[LRTrajectory]:
    """Best hand-made NMF run on each of ``count`` training instances (seeded by ``seed``)."""
    from learnlr.rl.env import NMFInstanceDistribution
    from learnlr.rl.evaluation import compare_on_instance

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)  # training stream: disjoint from the held-out seeds
    instances = [NMFInstanceDistribution().sample(rng) for _ in range(count)]
    if progress:
        from rich.progress import track

        instances = list(track(instances, description="runs to clone"))
    out = []
    for inst in instances:
        result = compare_on_instance(inst, None, budget=budget)
        family = min(result.runs, key=lambda f: (result.steps[f], result.runs[f].losses[-1]))
        out.append(trajectory_from_nmf_run(result.runs[family], source=f"{inst.problem.name}"
                                           f":{family}"))
    return out


def clone_dataset(
    trajectories: list[LRTrajectory], config: PolicyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(observations, actions) at the environment's decision points of every trajectory."""
    K = config.steps_per_action
    obs, actions = [], []
    for traj in trajectories:
        n = len(traj.lrs)
        grads = traj.grad_norms or [1.0] * n
        refs = traj.bounds or [traj.lrs[0]] * n
        builder = ObservationBuilder(config.feature_window)
        builder.reset(traj.losses[0], grads[0])
        controlled = traj.lrs[0]
        for t in range(0, n, K):
            if t > 0:
                for loss in traj.losses[t - K:t]:
                    builder.record(loss)
            if not math.isfinite(traj.losses[t]):
                break
            obs.append(builder.observe(traj.losses[t], grads[t], controlled, refs[t], t / n))
            target = math.log(traj.lrs[t] / controlled) / config.max_log_change
            actions.append(min(max(target, -1.0), 1.0))
            controlled = traj.lrs[t]
    if not obs:
        raise ValueError(f"trajectories: none of the {len(trajectories)} has a usable decision point (a finite loss at step 0 and at least one every steps_per_action = {K} steps)")
    return np.asarray(obs, dtype=np.float32), np.asarray(actions, dtype=np.float32)[:, None]


def behaviour_clone(
    trajectories: list[LRTrajectory],
    config: PolicyConfig,
    *,
    epochs: int = 300,
    learning_rate: float = 1e-2,
    seed: int = 0,
) -> PolicyNetwork:
    """Fit a fresh :class:`PolicyNetwork` to the trajectories' actions (full-batch Adam, MSE)."""
    obs, actions = clone_dataset(trajectories, config)
    return fit_actor(obs, actions, config, epochs=epochs, learning_rate=learning_rate, seed=seed)


def fit_actor(obs: np.ndarray, actions: np.ndarray, config: PolicyConfig, *, epochs: int = 300,
              learning_rate: float = 1e-2, seed: int = 0) -> PolicyNetwork:
    """A fresh :class:`PolicyNetwork` fitted to (observation, action) pairs (full-batch Adam,
    MSE): the one fitting step of every behaviour-cloning source."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    network = PolicyNetwork(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    x, y = torch.from_numpy(obs), torch.from_numpy(actions)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(network(x), y)
        loss.backward()
        optimizer.step()
    network.eval()
    return network
