"""What both LR-control environments share: the spaces, the action settings and the seeding.

:class:`learnlr.rl.env.LRControlEnv` (NMF) and
:class:`learnlr.rl.workload_env.WorkloadLRControlEnv` (benchmark workloads) differ in what an
episode trains; the agent's side of the contract (observation, action, episode seeding) is this
one class.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from learnlr.rl.features import OBS_LIMIT, ObservationBuilder, check_feature_window

__all__ = ["LRControlBase", "check_divergence_penalty"]


def check_divergence_penalty(value: float, *, allow_zero: bool = True) -> float:
    """``value`` if it is a finite penalty >= 0 (> 0 without ``allow_zero``), else a ValueError.

    The one check of every environment's ``divergence_penalty``: a negative one would pay the
    agent for diverging.
    """
    low_ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not (low_ok and math.isfinite(value)):
        raise ValueError(f"divergence_penalty must be finite and {'>=' if allow_zero else '>'} "
                         f"0, got {value!r}")
    return value


class LRControlBase(gym.Env):
    """Base class: observation and action spaces, action settings, ``reset`` seeding.

    ``seed`` seeds the episode stream on the first ``reset()`` without a seed; a later
    ``reset(seed=...)`` reseeds it (gymnasium's contract).
    """

    metadata = {"render_modes": []}

    def __init__(self, seed: int | None, *, steps_per_action: int, max_log_change: float,
                 min_relative_lr: float, feature_window: int, divergence_penalty: float) -> None:
        super().__init__()
        if isinstance(steps_per_action, bool) or not isinstance(steps_per_action, int) or (
                steps_per_action < 1):
            raise ValueError(f"steps_per_action must be an integer >= 1, got {steps_per_action!r}")
        if not (0 < max_log_change <= 5):
            raise ValueError(f"max_log_change must be in (0, 5], got {max_log_change}")
        if not (0 < min_relative_lr < 1):
            raise ValueError(f"min_relative_lr must be in (0, 1), got {min_relative_lr}")
        self.steps_per_action = steps_per_action
        self.max_log_change = max_log_change
        self.min_relative_lr = min_relative_lr
        self.feature_window = check_feature_window(feature_window)
        self.divergence_penalty = check_divergence_penalty(divergence_penalty)
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (ObservationBuilder.dim,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self._initial_seed = seed
        self._seeded = False

    def _seed_episode(self, seed: int | None) -> None:
        """gymnasium's seeding, with the constructor's seed used by the first reset."""
        if seed is None and not self._seeded:
            seed = self._initial_seed
        super().reset(seed=seed)
        self._seeded = True

    @staticmethod
    def _action_value(action: np.ndarray) -> float:
        """The action as a float in [-1, 1] (out-of-range actions are clipped)."""
        return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
