"""``LRControlEnv``: one episode = one training run whose learning rate the agent controls.

Observation: :data:`learnlr.rl.features.FEATURE_NAMES` (log loss, fast/slow smoothed deltas of
the log loss, loss variance over a window, gradient norm, LR relative to the stability bound,
budget fraction). Action: one number ``a`` in ``[-1, 1]``; the LR becomes
``lr * exp(a * max_log_change)`` and is then clipped to ``[min_relative_lr, 1] x bound``. Reward
(``reward=``): ``"log_decrease"``, the decrease of the log loss over the ``steps_per_action`` SGD
steps of the action (the return is ``log(L0 / L_T)``: final loss only), or ``"area"``, the mean of
``log(L0 / L_t)`` over those steps times ``steps_per_action / budget_steps`` (the return is the
run's average log improvement: the area under the log-loss curve, so reaching a low loss *early*
pays), or ``"area_final"``, their sum (early progress and the final loss both count). A
divergence (:func:`learnlr.control.divergence.has_diverged`: a non-finite loss or one above
``1e3 x`` the first) terminates the episode with ``-divergence_penalty``; the budget truncates it.
Both rules are those of :class:`~learnlr.rl.workload_env.WorkloadLRControlEnv` too.

Compared with DACBench's ``SGDEnv`` (see ``docs/rl.md``): same idea (episode = one training run,
action = learning rate), but our action is a bounded *multiplicative* change in log space rather
than an absolute LR, the LR is clipped to a stability bound, features are scale-free (ratios to
the run's own start) so a policy transfers across problem scales, and the workload is a cheap
NMF instance so PPO sees tens of thousands of runs on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learnlr.control.divergence import has_diverged
from learnlr.nmf.problems import NMFProblem, planted_problem
from learnlr.nmf.solver import GradientOracle, StochasticNMF
from learnlr.rl.base_env import LRControlBase
from learnlr.rl.features import ObservationBuilder

__all__ = ["WORKLOADS", "LRControlEnv", "NMFInstanceDistribution", "NMFInstance", "make_env"]

REWARDS = ("log_decrease", "area", "area_final")
"""Reward definitions (see the module docstring)."""
WORKLOADS = ("nmf",)
"""Workloads this class runs; any other name (or list of names) is a benchmark workload, for
which :func:`make_env` builds a :class:`learnlr.rl.workload_env.WorkloadLRControlEnv`."""


@dataclass(frozen=True)
class NMFInstance:
    """One sampled NMF training task: the matrix plus the gradient noise model."""

    problem: NMFProblem
    oracle: GradientOracle
    seed: int


@dataclass(frozen=True)
class NMFInstanceDistribution:
    """The distribution of NMF instances episodes are drawn from (shapes, ranks, noise levels)."""

    min_dim: int = 20
    """Smallest m and n."""
    max_dim: int = 60
    """Largest m and n."""
    min_rank: int = 2
    """Smallest planted rank (the factorization rank equals it)."""
    max_rank: int = 6
    """Largest planted rank."""
    max_data_noise: float = 0.2
    """Data noise is drawn from U(0, max_data_noise)."""
    sigma_range: tuple[float, float] = (0.02, 0.5)
    """Additive gradient noise sigma, log-uniform in this range."""
    minibatch_probability: float = 0.5
    """Probability of the mini-batch oracle instead of the additive one."""
    batch_fraction_range: tuple[float, float] = (0.1, 0.5)
    """Mini-batch fraction, uniform in this range."""

    def sample(self, rng: np.random.Generator) -> NMFInstance:
        """Draw one instance; everything comes from ``rng``, so a seeded rng repeats it."""
        m = int(rng.integers(self.min_dim, self.max_dim + 1))
        n = int(rng.integers(self.min_dim, self.max_dim + 1))
        k = int(rng.integers(self.min_rank, self.max_rank + 1))
        seed = int(rng.integers(0, 2**31 - 1))
        problem = planted_problem(m, n, k, noise=float(rng.uniform(0, self.max_data_noise)),
                                  seed=seed)
        if rng.uniform() < self.minibatch_probability:
            oracle = GradientOracle("minibatch",
                                    batch_fraction=float(rng.uniform(*self.batch_fraction_range)))
        else:
            lo, hi = self.sigma_range
            oracle = GradientOracle("additive",
                                    sigma=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        return NMFInstance(problem=problem, oracle=oracle, seed=seed)


class LRControlEnv(LRControlBase):
    """Learning-rate control as a gymnasium environment.

    For benchmark workloads (one episode = one training run of a network) use
    :func:`make_env`, which builds a :class:`learnlr.rl.workload_env.WorkloadLRControlEnv`.

    Args:
        workload: ``"nmf"`` (the only workload of this class; see :func:`make_env`).
        seed: seeds the instance stream (``reset(seed=...)`` overrides it).
        budget_steps: SGD steps per episode (the last decision gets fewer than
            ``steps_per_action`` when it is not a multiple of them).
        steps_per_action: SGD steps between two decisions.
        max_log_change: the largest LR change per decision is ``exp(max_log_change)``.
        min_relative_lr: LR floor as a fraction of the bound (keeps the log feature finite).
        initial_lr_range: the episode's first LR, as a fraction of the bound, log-uniform.
        distribution: where instances come from.
        instance: if given, every episode runs this instance (used for evaluation).
        divergence_penalty: reward when a run diverges (the episode then ends).
        feature_window: losses in the variance feature.
        clip_to_bound: clip the LR to the stability bound (``False`` is an ablation: the LR is
            then only capped at ``1e6`` x the initial bound, so runs can diverge).
        reward: ``"log_decrease"`` (final loss), ``"area"`` (area under the log-loss curve) or
            ``"area_final"`` (their sum).

    Example:
        >>> env = LRControlEnv("nmf", seed=0, budget_steps=40)
        >>> obs, info = env.reset()
        >>> obs.shape
        (7,)
    """

    def __init__(
        self,
        workload: str = "nmf",
        seed: int | None = None,
        *,
        budget_steps: int = 400,
        steps_per_action: int = 10,
        max_log_change: float = math.log(2.0),
        min_relative_lr: float = 1e-2,
        initial_lr_range: tuple[float, float] = (0.05, 1.0),
        distribution: NMFInstanceDistribution | None = None,
        instance: NMFInstance | None = None,
        divergence_penalty: float = 10.0,
        feature_window: int = 10,
        clip_to_bound: bool = True,
        reward: str = "log_decrease",
    ) -> None:
        super().__init__(seed, steps_per_action=steps_per_action, max_log_change=max_log_change,
                         min_relative_lr=min_relative_lr, feature_window=feature_window,
                         divergence_penalty=divergence_penalty)
        if workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {list(WORKLOADS)}, got {workload!r}; "
                             "for benchmark workloads use learnlr.rl.make_env(workload, ...)")
        if (isinstance(budget_steps, bool) or not isinstance(budget_steps, int)
                or budget_steps < steps_per_action):
            raise ValueError(f"budget_steps must be an integer >= steps_per_action "
                             f"({steps_per_action}), got {budget_steps!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {reward!r}")
        lo, hi = initial_lr_range
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"initial_lr_range must satisfy 0 < lo <= hi <= 1, got {(lo, hi)}")
        self.workload = workload
        self.budget_steps = budget_steps
        self.initial_lr_range = (lo, hi)
        self.distribution = distribution or NMFInstanceDistribution()
        self.fixed_instance = instance
        self.clip_to_bound = clip_to_bound
        self.reward = reward
        self.history: list[float] = []
        """Per-SGD-step losses of the current episode (for plots and steps-to-target)."""
        self.lr_history: list[float] = []
        """Per-SGD-step LRs of the current episode."""

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._seed_episode(seed)
        instance = self.fixed_instance or self.distribution.sample(self.np_random)
        self.instance = instance
        self.nmf = StochasticNMF(instance.problem, oracle=instance.oracle,
                                 init_seed=instance.seed, noise_seed=instance.seed + 1,
                                 safety=0.95 if self.clip_to_bound else None)
        self.optimizer = torch.optim.SGD(self.nmf.parameters(), lr=1.0)
        lo, hi = self.initial_lr_range
        bound = self.nmf.stability_bound()
        self.initial_bound = bound
        self.lr = bound * float(math.exp(self.np_random.uniform(math.log(lo), math.log(hi))))
        self.steps_done = 0
        self.loss = self.nmf.loss()
        self.initial_loss = self.loss
        self.features = ObservationBuilder(self.feature_window)
        with torch.no_grad():
            R = self.nmf.W @ self.nmf.H - self.nmf.X
            grad_norm = math.sqrt(float(((R @ self.nmf.H.T) ** 2).sum()
                                        + ((self.nmf.W.T @ R) ** 2).sum()))
        self.features.reset(self.loss, grad_norm)
        self.bound = bound
        self.history, self.lr_history = [], []
        obs = self.features.observe(self.loss, grad_norm, self.lr, bound, 0.0)
        return obs, self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._action_value(action)
        self.lr = self._clip_lr(self.lr * math.exp(a * self.max_log_change), self.bound)
        log_before = math.log(self.loss)
        area = 0.0
        grad_norm = 0.0
        diverged = False
        # The last window is cut short when budget_steps is not a multiple of steps_per_action
        # (as WorkloadLRControlEnv's): an episode never runs past its budget.
        for _ in range(min(self.steps_per_action, self.budget_steps - self.steps_done)):
            self.optimizer.param_groups[0]["lr"] = self.lr
            record = self.nmf.step(self.optimizer)
            self.history.append(record.loss)
            self.lr_history.append(record.lr)
            self.features.record(record.loss)
            self.steps_done += 1
            grad_norm, self.bound = record.grad_norm, record.bound
            if has_diverged(record.loss, self.initial_loss):
                diverged = True
                break
            area += math.log(self.initial_loss / record.loss)
        self.loss = self.nmf.loss()
        if has_diverged(self.loss, self.initial_loss):
            diverged = True
        if diverged:
            obs = np.zeros(self.observation_space.shape, dtype=np.float32)
            return obs, -self.divergence_penalty, True, False, self._info(diverged=True)
        self.bound = self.nmf.stability_bound()
        self.lr = self._clip_lr(self.lr, self.bound)
        reward = 0.0
        if self.reward in ("area", "area_final"):
            reward += area / self.budget_steps
        if self.reward in ("log_decrease", "area_final"):
            reward += log_before - math.log(self.loss)
        truncated = self.steps_done >= self.budget_steps
        obs = self.features.observe(self.loss, grad_norm, self.lr, self.bound,
                                    self.steps_done / self.budget_steps)
        return obs, float(reward), False, truncated, self._info()

    # -- helpers -------------------------------------------------------------------------------
    def _clip_lr(self, lr: float, bound: float) -> float:
        ceiling = bound if self.clip_to_bound else 1e6 * self.initial_bound
        return min(max(lr, self.min_relative_lr * bound), ceiling)

    def _info(self, diverged: bool = False) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "lr": self.lr,
            "bound": self.bound,
            "steps": self.steps_done,
            "diverged": diverged,
        }


def make_env(workload: str | Sequence[str] = "nmf", seed: int | None = None,
             **kwargs: Any) -> gym.Env:
    """The LR-control environment for ``workload``: one episode = one training run.

    ``"nmf"`` builds an :class:`LRControlEnv` (a sampled NMF instance); a benchmark workload name
    or a list of them (``learnlr list``) builds a
    :class:`learnlr.rl.workload_env.WorkloadLRControlEnv`. ``kwargs`` go to that class.

    Example:
        >>> type(make_env("nmf", seed=0, budget_steps=40)).__name__
        'LRControlEnv'
    """
    if isinstance(workload, str) and workload in WORKLOADS:
        return LRControlEnv(workload, seed=seed, **kwargs)
    from learnlr.rl.workload_env import WorkloadLRControlEnv

    return WorkloadLRControlEnv(workload, seed=seed, **kwargs)
