"""``ResidualWorkloadEnv``: learn a correction of the budget-aware GreedyLR on benchmark runs.

One episode is one benchmark cell's training run (:class:`learnlr.bench.runner.TrainingRun`,
the loop of :func:`~learnlr.bench.runner.run_cell`, same seeding) with
:class:`learnlr.rl.residual.GreedyResidual` as its scheduler. The agent acts after every
validation evaluation of the cell (``eval_every``), exactly where
:meth:`learnlr.rl.scheduler.RLScheduler.decide` acts in use.

* **Observation**: :data:`learnlr.rl.features.GREEDY_RESIDUAL_FEATURE_NAMES` (training-loss
  statistics, gradient norm, LR relative to the initial LR, budget fraction, the current
  correction, the validation loss relative to its first and to its best value).
* **Action**: ``a`` in ``[-1, 1]``; until the next evaluation every update uses
  ``exp(a * max_log_change) x`` GreedyLR's LR.
* **Reward**: 0 until the end, then ``log(base / final)`` where ``final`` is the run's final
  validation loss and ``base`` the final validation loss of the *same cell* (workload,
  optimizer, seed and LR track) under the base schedule (``base=``, by default ``greedy_step``),
  read from the experiment store. Pairing removes the seed's and the workload's own difficulty
  from the return: the agent is paid for beating the base, not for drawing an easy run. A
  divergence (:func:`learnlr.control.divergence.has_diverged`, or a non-finite final
  validation loss) ends the episode with ``-divergence_penalty``. A finished run whose base
  diverged gets ``+1``. The end of the budget truncates the episode.

Episodes are drawn uniformly from ``episodes`` (:class:`ResidualEpisode`, built by
:func:`learnlr.rl.residual_training.base_episodes` from the store) with ``self.np_random``:
same ``reset(seed=...)``, same episode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learnlr.bench.records import CellConfig
from learnlr.bench.runner import StepOutcome, TrainingRun
from learnlr.bench.schedules import TrainingHooks, make_optimizer
from learnlr.bench.workloads import shared_workload
from learnlr.control.divergence import has_diverged
from learnlr.rl.base_env import check_divergence_penalty
from learnlr.rl.features import GREEDY_RESIDUAL_FEATURE_NAMES, OBS_LIMIT, check_feature_window
from learnlr.rl.residual import GreedyResidual, check_base

__all__ = ["ResidualEpisode", "ResidualWorkloadEnv", "paired_reward"]

BASE_SCHEDULE = "greedy_step"
"""The benchmark schedule a residual policy corrects by default
(``GreedyLR(opt, total_steps=budget)``; :data:`learnlr.rl.residual.RESIDUAL_BASES` lists all)."""


@dataclass(frozen=True)
class ResidualEpisode:
    """One training cell an episode can run, with its base run's final validation loss."""

    workload: str
    optimizer: str
    seed: int
    base_lr: float
    """The tuned base LR (the bench's protocol); the run starts from ``base_lr * lr_scale``."""
    lr_scale: float
    budget_steps: int
    eval_every: int
    base_val_loss: float | None
    """Final validation loss of the base schedule's cell; None if that run diverged."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResidualEpisode:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def base_cell(self, fingerprint: str, base: str = BASE_SCHEDULE) -> CellConfig:
        """The base schedule's cell of this episode (its hash finds it in the store)."""
        return CellConfig(self.workload, self.optimizer, base, self.seed, self.base_lr,
                          self.budget_steps, self.eval_every, fingerprint, lr_scale=self.lr_scale)


def paired_reward(final_val_loss: float | None, base_val_loss: float | None,
                  penalty: float) -> float:
    """``log(base / final)``, clipped to ``[-penalty, penalty]``; ``-penalty`` for a run that did
    not finish; ``+1`` for a finished run whose base diverged."""
    if final_val_loss is None or not math.isfinite(final_val_loss):
        return -penalty
    if base_val_loss is None or not math.isfinite(base_val_loss):
        return 1.0
    ratio = math.log(max(base_val_loss, 1e-12)) - math.log(max(final_val_loss, 1e-12))
    return float(min(max(ratio, -penalty), penalty))


class _Hooks:
    """The runner's scheduler slot: step(loss) and decide(val) feed the residual controller;
    the env, not a policy, acts between two yields of the loop."""

    def __init__(self, residual: GreedyResidual) -> None:
        self.residual = residual

    def step(self, loss: float) -> None:
        self.residual.record(loss)

    def decide(self, val_loss: float) -> None:
        self.residual.record_validation(val_loss)


class ResidualWorkloadEnv(gym.Env):
    """Residual LR control over ``greedy_step`` (or ``base``) on benchmark cells (see the
    module docstring).

    Args:
        episodes: the cells to draw from (dicts or :class:`ResidualEpisode`).
        seed: seeds the episode stream (``reset(seed=...)`` overrides it).
        max_log_change: the correction is at most ``exp(max_log_change)`` either way.
        feature_window: losses in the variance feature.
        divergence_penalty: the reward of a run that diverges (it also clips the paired reward).
        lower_only: the correction can only lower GreedyLR's LR.
        base: the schedule corrected (:data:`learnlr.rl.residual.RESIDUAL_BASES`); the
            episodes' ``base_val_loss`` must come from its cells.
    """

    metadata = {"render_modes": []}

    def __init__(self, episodes: Sequence[ResidualEpisode | Mapping[str, Any]],
                 seed: int | None = None, *, max_log_change: float = math.log(2.0),
                 feature_window: int = 10, divergence_penalty: float = 2.0,
                 lower_only: bool = False, base: str = BASE_SCHEDULE) -> None:
        super().__init__()
        self.episodes = [e if isinstance(e, ResidualEpisode) else ResidualEpisode.from_json(e)
                         for e in episodes]
        if not self.episodes:
            raise ValueError("episodes must list at least one cell")
        if not (0 < max_log_change <= 5):
            raise ValueError(f"max_log_change must be in (0, 5], got {max_log_change}")
        self.max_log_change = max_log_change
        self.lower_only = lower_only
        self.base = check_base(base)
        self.feature_window = check_feature_window(feature_window)
        # > 0: the penalty also clips the paired reward, which 0 would flatten.
        self.divergence_penalty = check_divergence_penalty(divergence_penalty, allow_zero=False)
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT,
                                                (len(GREEDY_RESIDUAL_FEATURE_NAMES),),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self._initial_seed, self._seeded = seed, False
        self.val_losses: list[float] = []
        """Validation losses of the current episode, one per evaluation."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a cell, train it up to its first evaluation and return the first observation."""
        if seed is None and not self._seeded:
            seed = self._initial_seed
        super().reset(seed=seed)
        self._seeded = True
        torch.set_num_threads(1)  # as run_cell: one run per core
        self.episode = self.episodes[int(self.np_random.integers(len(self.episodes)))]
        self._start(self.episode)
        outcome = self._advance()
        if outcome is None or outcome.step == self.episode.budget_steps - 1:
            self._done_early = True  # diverged, or a run with a single evaluation at the end
        return self.residual.observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Set the correction, train to the next evaluation, observe (reward at the end)."""
        zeros = np.zeros(self.observation_space.shape, dtype=np.float32)
        if self._done_early:
            return self._finish(zeros)
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self.residual.act(a)
        outcome = self._advance()
        if outcome is None:
            return zeros, -self.divergence_penalty, True, False, self._info()
        if outcome.step == self.episode.budget_steps - 1:
            return self._finish(self.residual.observation())
        return self.residual.observation(), 0.0, False, False, self._info()

    def _finish(self, obs: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        final = self.val_losses[-1] if self.run.status == "ok" and self.val_losses else None
        if self.run.status != "ok" or self.diverged:
            return obs, -self.divergence_penalty, True, False, self._info()
        reward = paired_reward(final, self.episode.base_val_loss, self.divergence_penalty)
        return obs, reward, False, True, self._info()

    # -- the run -------------------------------------------------------------------------------
    def _start(self, ep: ResidualEpisode) -> None:
        def build(params: Any) -> TrainingHooks:
            opt = make_optimizer(ep.optimizer, params, ep.base_lr * ep.lr_scale)
            self.residual = GreedyResidual(opt, ep.budget_steps,
                                           max_log_change=self.max_log_change,
                                           feature_window=self.feature_window,
                                           lower_only=self.lower_only, base=self.base)
            return TrainingHooks(opt, _Hooks(self.residual), step_on="step_loss_then_eval")

        self.run = TrainingRun.start(shared_workload(ep.workload), ep.seed, build,
                                     ep.budget_steps)
        self._steps: Iterator[StepOutcome] = self.run.steps(ep.eval_every)
        self.val_losses, self.lrs = [], []
        self.initial_loss: float | None = None
        self.diverged = self._done_early = False

    def _advance(self) -> StepOutcome | None:
        """Train up to and including the next evaluation; None if the run diverged."""
        with self.run.rng.active():
            for outcome in self._steps:
                self.lrs.append(outcome.lr)
                if self.initial_loss is None:
                    self.initial_loss = outcome.loss
                if has_diverged(outcome.loss, self.initial_loss):
                    self.diverged = True
                    return None
                if outcome.val_loss is not None:
                    self.val_losses.append(outcome.val_loss)
                    if not math.isfinite(outcome.val_loss):
                        self.diverged = True
                        return None
                    return outcome
        self.diverged = True  # the loop stopped without a final evaluation: it diverged
        return None

    def _info(self) -> dict[str, Any]:
        ep = self.episode
        return {"workload": ep.workload, "optimizer": ep.optimizer, "seed": ep.seed,
                "lr_scale": ep.lr_scale, "multiplier": self.residual.multiplier,
                "val_loss": self.val_losses[-1] if self.val_losses else None,
                "base_val_loss": ep.base_val_loss, "diverged": self.diverged}
