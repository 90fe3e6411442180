"""A residual RL policy over a strong NMF base schedule (issue 11, NMF part).

Why residual: the direct NMF policy (:class:`learnlr.rl.env.LRControlEnv`) has to rediscover a
whole schedule from scratch and ends at parity with the best single step decay. Here the agent
only *corrects* a base schedule chosen on training instances: every ``K`` steps it picks
``a`` in ``[-1, 1]`` and the LR becomes ``base_lr(t) * C ** a`` until the next decision. A zero
action writes nothing, so the base trajectory is reproduced bit for bit and PPO starts from the
base's performance instead of from a random schedule.

Pieces:

- :func:`training_instances`, :func:`measure_instance`, :func:`choose_base`: the base is the
  step-decay configuration (the grid of :func:`learnlr.rl.evaluation.handmade_schedules`) or
  GreedyLR with the lowest median (``rule="median"``) or mean (``rule="mean"``, the shipped
  policy's base) steps-to-target on *training* instances (seed stream
  ``TRAIN_SEED_OFFSET + i``, disjoint from the held-out stream).
- :class:`ResidualScheduler`: wraps the base's torch scheduler; ``step(metric)`` restores the
  base's own LR, steps the base, then applies the correction. The solver's per-step cap at
  ``0.95 x`` the stability bound (:meth:`learnlr.nmf.StochasticNMF.step`) applies to the
  corrected LR exactly as to every other NMF schedule.
- :class:`NMFResidualEnv`: one episode = one training instance under the residual scheduler.
  Reward, paired with the base run on the same instance (cached per instance): the episode
  returns ``(S_base - S_agent) / S_base`` where ``S`` is steps to the instance's target (the
  evaluation's target: ``1.02 x`` the best hand-made final loss), paid step by step as the two
  runs reach it, so a run identical to the base earns exactly 0 and a slower run is negative.
  Optionally (``final_weight``) a run that never reaches the target also gets the log ratio of
  the base's final loss to its own (0 for the base's run too). A divergence ends the episode
  with ``-divergence_penalty``.
- :func:`train_residual_policy`: PPO (stable-baselines3), exported to a
  :class:`~learnlr.rl.policy.PolicyNetwork` with ``kind="nmf_residual"``.
- :func:`residual_schedule`: a policy (or a constant action) as an
  :class:`~learnlr.nmf.schedules.NMFSchedule` for :func:`learnlr.nmf.solve`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learnlr.control.divergence import has_diverged
from learnlr.nmf.schedules import NMFSchedule, step_decay
from learnlr.nmf.solver import StochasticNMF, _step_takes_metric
from learnlr.rl.base_env import LRControlBase
from learnlr.rl.env import NMFInstance, NMFInstanceDistribution
from learnlr.rl.evaluation import handmade_schedules, run_schedule
from learnlr.rl.features import (
    FEATURE_SETS,
    OBS_LIMIT,
    ObservationBuilder,
    check_feature_window,
)
from learnlr.rl.policy import PolicyConfig, PolicyNetwork
from learnlr.rl.scheduler import grad_norm_of
from learnlr.rl.training import PPOSettings, check_positive_int

__all__ = [
    "KIND",
    "TRAIN_SEED_OFFSET",
    "InstanceMeasure",
    "NMFResidualEnv",
    "ResidualScheduler",
    "NMFResidualTrainConfig",
    "base_schedule",
    "choose_base",
    "measure_instance",
    "pretrained_residual_path",
    "pretrained_residual_schedule",
    "residual_schedule",
    "train_residual_policy",
    "training_instances",
]

KIND = "nmf_residual"
"""The policy ``kind`` (:data:`learnlr.rl.features.FEATURE_SETS` key) of these policies."""
TRAIN_SEED_OFFSET = 3_000_000
"""Training instances come from ``default_rng(TRAIN_SEED_OFFSET + i)``: disjoint from the
held-out stream (``learnlr.rl.evaluation.HELD_OUT_SEED_OFFSET + i`` = ``1_000_000 + i``,
``i < 2e6``) and the validation stream of ``docs/rl.md`` (``2_000_000 + i``)."""
SAFETY = 0.95
"""The solver's LR cap as a fraction of the stability bound (that of every NMF run)."""


# -- the base schedule, chosen on training instances ---------------------------------------------
def training_instances(count: int, distribution: NMFInstanceDistribution | None = None,
                       start: int = 0) -> list[NMFInstance]:
    """``count`` instances from the training seed stream, starting at index ``start``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    dist = distribution or NMFInstanceDistribution()
    return [dist.sample(np.random.default_rng(TRAIN_SEED_OFFSET + start + i))
            for i in range(count)]


@dataclass(frozen=True)
class InstanceMeasure:
    """One instance's target and the steps to it (and final loss) of every hand-made schedule."""

    target: float
    steps: dict[str, int]
    """``budget + 1`` = not reached (or diverged)."""
    finals: dict[str, float] = field(default_factory=dict)
    """Final loss of each schedule (``inf`` if it diverged)."""


def measure_instance(instance: NMFInstance, budget: int = 400,
                     tolerance: float = 0.02) -> InstanceMeasure:
    """Run the hand-made schedules once; the target is the evaluation's (1.02 x best final).

    Same runs and target as :func:`learnlr.rl.evaluation.compare_on_instance` without a policy,
    but every schedule's steps and final loss are kept (not only each family's best).
    """
    if not (0 <= tolerance <= 1):
        raise ValueError(f"tolerance must be in [0, 1], got {tolerance}")
    runs = {spec.name: run_schedule(instance, spec, budget)
            for spec in handmade_schedules(budget)}
    target = (1.0 + tolerance) * min(r.losses[-1] for r in runs.values() if not r.diverged)
    steps, finals = {}, {}
    for name, run in runs.items():
        reached = None if run.diverged else run.steps_to(target)
        steps[name] = budget + 1 if reached is None else reached
        finals[name] = math.inf if run.diverged else run.losses[-1]
    return InstanceMeasure(target=target, steps=steps, finals=finals)


def base_candidates(budget: int) -> list[str]:
    """Names of the schedules the base is chosen from: the step-decay grid and GreedyLR."""
    return [s.name for s in handmade_schedules(budget) if s.family in ("step", "greedy")]


BASE_RULES = ("median", "mean")
"""How :func:`choose_base` ranks candidates: by median or by mean steps-to-target."""


def choose_base(measures: Sequence[InstanceMeasure], budget: int = 400,
                rule: str = "median") -> tuple[str, dict]:
    """The candidate with the lowest median (``rule="median"``; ties: mean) or mean
    (``rule="mean"``; ties: median) steps-to-target.

    The mean counts a missed target as ``budget + 1``, so it prefers a base that rarely misses:
    a residual can shorten a run that reaches the target, but repairing a miss means holding a
    correction for hundreds of steps. Returns ``(name, evidence)`` with every candidate's median,
    mean and misses, for the record.
    """
    if not measures:
        raise ValueError("measures must hold at least one instance, got 0")
    if rule not in BASE_RULES:
        raise ValueError(f"rule must be one of {list(BASE_RULES)}, got {rule!r}")
    evidence = {}
    for name in base_candidates(budget):
        steps = [m.steps[name] for m in measures]
        evidence[name] = {"median": float(np.median(steps)), "mean": float(np.mean(steps)),
                          "not_reached": int(sum(s > budget for s in steps))}
    order = ("median", "mean") if rule == "median" else ("mean", "median")
    best = min(evidence, key=lambda n: tuple(evidence[n][k] for k in order))
    return best, evidence


_STEP_NAME = re.compile(r"step\(lr0=([0-9.]+),gamma=([0-9.]+),every=([0-9]+)\)")


def base_schedule(name: str, budget: int = 400) -> NMFSchedule:
    """The hand-made schedule called ``name``: a :func:`base_candidates` entry, or any
    ``step(lr0=..,gamma=..,every=..)`` (so a policy's recorded base, e.g. ``every=100`` from a
    400-step training budget, rebuilds the same StepLR for runs of another length)."""
    for spec in handmade_schedules(budget):
        if spec.name == name:
            return spec
    match = _STEP_NAME.fullmatch(name)
    if match:
        return step_decay(float(match.group(1)), float(match.group(2)), int(match.group(3)))
    raise ValueError(f"base must be one of {base_candidates(budget)} or a "
                     f"'step(lr0=..,gamma=..,every=..)' name, got {name!r}")


# -- the residual scheduler ----------------------------------------------------------------------
class ResidualScheduler:
    """``lr(t) = base_lr(t) * max_correction ** a``; ``a`` is set every ``steps_per_action`` steps.

    Used like any scheduler of :func:`learnlr.nmf.solve`: ``step(metric)`` after each optimizer
    step. With ``controller`` (``obs -> a``) the scheduler asks it at steps ``0, K, 2K, ...``;
    without one, :meth:`set_action` sets ``a`` (the environment's way). The base scheduler is
    stepped on its *own* LR (restored before its step), because chainable torch schedulers
    (StepLR, cosine, GreedyLR) read the optimizer's current LR. When the correction is exactly 1
    nothing is ever written, so the run is the base run bit for bit. Float LRs only (NMF's SGD).

    Args:
        optimizer: the wrapped optimizer (its LR at construction is the base's initial LR).
        base: the base scheduler built on ``optimizer``, or None for a constant base LR.
        nmf: the solver state (loss, stability bound and gradients for the observation).
        total_steps: the run's length (budget fraction feature).
        steps_per_action: optimizer steps between two decisions.
        max_correction: ``C``; the correction is in ``[1/C, C]``.
        controller: optional ``obs -> a`` (e.g. ``PolicyNetwork.act``).
        feature_window: losses in the variance feature.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base: Any, nmf: StochasticNMF, *,
                 total_steps: int, steps_per_action: int = 10, max_correction: float = 4.0,
                 controller: Callable[[np.ndarray], float] | None = None,
                 feature_window: int = 10) -> None:
        if not (1.0 < max_correction <= 100.0):
            raise ValueError(f"max_correction must be in (1, 100], got {max_correction}")
        if steps_per_action < 1 or total_steps < 1:
            raise ValueError("steps_per_action and total_steps must be >= 1, got "
                             f"{steps_per_action} and {total_steps}")
        check_feature_window(feature_window)
        self.optimizer, self.base, self.nmf = optimizer, base, nmf
        self.total_steps, self.steps_per_action = total_steps, steps_per_action
        self.max_correction, self.controller = max_correction, controller
        self.base_takes_metric = _step_takes_metric(base)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.action = 0.0
        self.correction = 1.0
        self.steps = 0
        self._written = False
        self.features = ObservationBuilder(feature_window)
        self._grad_norm = _exact_grad_norm(nmf)
        self.features.reset(nmf.loss(), self._grad_norm)
        if controller is not None:
            self.set_action(controller(self.observe()))

    def set_action(self, action: float) -> None:
        """Set ``a`` (clipped to [-1, 1]) and apply ``C ** a`` to the base's current LR."""
        if not math.isfinite(float(action)):
            raise ValueError(f"action must be a finite number in [-1, 1], got {action}")
        a = float(np.clip(action, -1.0, 1.0))
        self.action = a
        self.correction = self.max_correction ** a  # exactly 1.0 for a == 0
        self._apply()

    def step(self, metric: float | None = None) -> None:
        """Step the base on its own LR, then re-apply the correction (asking the controller at
        decision points)."""
        self._restore()
        if self.base is not None:
            self.base.step(metric) if self.base_takes_metric else self.base.step()
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.steps += 1
        if metric is not None:
            self.features.record(float(metric))
        self._grad_norm = grad_norm_of(self.optimizer)
        if self.controller is not None and self.steps % self.steps_per_action == 0:
            self.set_action(self.controller(self.observe()))
        else:
            self._apply()

    def observe(self) -> np.ndarray:
        """The policy's observation (:data:`learnlr.rl.features.NMF_RESIDUAL_FEATURE_NAMES`)."""
        bound = self.nmf.stability_bound()
        lr = self.base_lrs[0] * self.correction
        obs = self.features.observe(self.nmf.loss(), self._grad_norm, lr, bound,
                                    self.steps / self.total_steps)
        extra = [math.log(self.correction) / math.log(self.max_correction),
                 (math.log(self.base_lrs[0]) - math.log(bound)) / 3.0
                 if self.base_lrs[0] > 0 and 0 < bound < math.inf else 0.0]
        extra_arr = np.clip(np.nan_to_num(np.array(extra)), -OBS_LIMIT, OBS_LIMIT)
        return np.concatenate([obs, extra_arr.astype(np.float32)])

    def _apply(self) -> None:
        if self.correction == 1.0:
            self._restore()
            return
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * self.correction
        self._written = True

    def _restore(self) -> None:
        if self._written:
            for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base_lr
            self._written = False


def _exact_grad_norm(nmf: StochasticNMF) -> float:
    with torch.no_grad():
        R = nmf.W @ nmf.H - nmf.X
        return math.sqrt(float(((R @ nmf.H.T) ** 2).sum() + ((nmf.W.T @ R) ** 2).sum()))


def residual_schedule(base: NMFSchedule, budget: int, *, policy: PolicyNetwork | None = None,
                      action: float = 0.0, action_at: Callable[[int], float] | None = None,
                      max_correction: float = 4.0, steps_per_action: int = 10,
                      name: str = "rl_residual") -> NMFSchedule:
    """``base`` corrected by ``policy``, by the open-loop ``action_at(step)`` (asked at the
    decision steps; the oracles of the benchmark) or by the constant ``action``, as an NMF
    schedule."""
    if policy is not None and action_at is not None:
        raise ValueError("give policy or action_at, not both")
    if policy is not None:
        max_correction = float(policy.config.training.get("max_correction", max_correction))
        steps_per_action = policy.config.steps_per_action

    def factory(optimizer: torch.optim.Optimizer, nmf: StochasticNMF) -> ResidualScheduler:
        inner = base.factory(optimizer, nmf) if base.factory is not None else None
        clock = [0]  # the step count, for the open-loop controller (read before construction)
        controller = policy.act if policy is not None else None
        if action_at is not None:
            def controller(_obs: np.ndarray) -> float:
                return action_at(clock[0].steps if clock[0] else 0)
        sched = ResidualScheduler(optimizer, inner, nmf, total_steps=budget,
                                  steps_per_action=steps_per_action,
                                  max_correction=max_correction, controller=controller)
        clock[0] = sched
        if controller is None:
            sched.set_action(action)
        return sched

    return NMFSchedule(name, name, base.lr_fraction, factory)


def pretrained_residual_path() -> Path:
    """Path stem of the shipped residual policy (``learnlr/rl/pretrained/nmf_residual``).

    Not in :data:`learnlr.rl.scheduler.PRETRAINED`: that list is the policies an
    :class:`~learnlr.rl.scheduler.RLScheduler` runs; this one needs its NMF base schedule.
    """
    return Path(str(resources.files("learnlr.rl") / "pretrained" / KIND))


def pretrained_residual_schedule(budget: int = 400) -> NMFSchedule:
    """The shipped residual policy over the base it was trained on, as an NMF schedule."""
    from learnlr.rl.policy import load_policy

    policy = load_policy(pretrained_residual_path())
    return residual_schedule(base_schedule(policy.config.training["base"], budget), budget,
                             policy=policy)


# -- the environment -----------------------------------------------------------------------------
class NMFResidualEnv(LRControlBase):
    """One episode = one instance of ``pool`` run under :class:`ResidualScheduler` over ``base``.

    Each episode draws an instance from ``pool`` (instances with their cached
    :class:`InstanceMeasure`, which holds the base's steps to the target: the paired baseline).
    The episode ends when the agent's run reaches the target (the rest of the return is then
    known: the base's remaining steps), at the budget, or on divergence (``-divergence_penalty``).

    Args:
        pool: ``(instance, measure)`` pairs; ``measure.steps`` must contain ``base``.
        base: the base schedule's name (:func:`base_candidates`).
        seed: seeds which instance each episode draws.
        budget_steps: SGD steps per run (that of the measures).
        steps_per_action: SGD steps between two decisions.
        max_correction: ``C``: the LR is ``base_lr * C ** a``.
        divergence_penalty: reward when the run diverges.
        final_weight: when the agent's run never reaches the target, the last reward also gets
            ``final_weight * log(base final loss / agent final loss)`` (paired too: 0 for the
            base's own run), so runs that miss the target still learn which way is closer.
        safety: the solver's cap (``None`` lifts it: a test of the divergence rule only).
    """

    def __init__(self, pool: Sequence[tuple[NMFInstance, InstanceMeasure]], base: str,
                 seed: int | None = None, *, budget_steps: int = 400, steps_per_action: int = 10,
                 max_correction: float = 4.0, divergence_penalty: float = 10.0,
                 final_weight: float = 0.0, feature_window: int = 10,
                 safety: float | None = SAFETY) -> None:
        if not (1.0 < max_correction <= 100.0):
            raise ValueError(f"max_correction must be in (1, 100], got {max_correction}")
        super().__init__(seed, steps_per_action=steps_per_action,
                         max_log_change=math.log(max_correction),
                         min_relative_lr=1e-2, feature_window=feature_window,
                         divergence_penalty=divergence_penalty)
        if not pool:
            raise ValueError("pool must hold at least one (instance, measure) pair, got 0")
        if budget_steps < steps_per_action:
            raise ValueError(f"budget_steps must be >= steps_per_action ({steps_per_action}), "
                             f"got {budget_steps}")
        self.spec = base_schedule(base, budget_steps)
        if final_weight < 0:
            raise ValueError(f"final_weight must be >= 0, got {final_weight}")
        for _, measure in pool:
            if base not in measure.steps or (final_weight > 0 and base not in measure.finals):
                raise ValueError(f"every measure must contain the base {base!r} (its steps, "
                                 "and its final loss when final_weight > 0)")
        self.final_weight = final_weight
        self.pool, self.base = list(pool), base
        self.budget_steps, self.max_correction, self.safety = budget_steps, max_correction, safety
        dim = len(FEATURE_SETS[KIND])
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (dim,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        self._seed_episode(seed)
        index = int(self.np_random.integers(len(self.pool)))
        if options and "index" in options:
            index = int(options["index"])
        self.instance, measure = self.pool[index]
        self.target, self.base_steps = measure.target, measure.steps[self.base]
        self.base_final = measure.finals.get(self.base, math.nan)
        inst = self.instance
        # Exactly learnlr.nmf.solve's setup, so a zero action reproduces the base's run.
        self.nmf = StochasticNMF(inst.problem, oracle=inst.oracle, init_seed=inst.seed,
                                 noise_seed=inst.seed + 1, safety=self.safety)
        self.optimizer = torch.optim.SGD(self.nmf.parameters(),
                                         lr=self.spec.lr_fraction * self.nmf.stability_bound())
        inner = self.spec.factory(self.optimizer, self.nmf) if self.spec.factory else None
        self.scheduler = ResidualScheduler(self.optimizer, inner, self.nmf,
                                           total_steps=self.budget_steps,
                                           steps_per_action=self.steps_per_action,
                                           max_correction=self.max_correction,
                                           feature_window=self.feature_window)
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.first: float | None = None
        self.agent_steps: int | None = None
        self.paid = 0.0
        return self.scheduler.observe(), {"base_steps": self.base_steps, "target": self.target}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.scheduler.set_action(self._action_value(action))
        for _ in range(self.steps_per_action):
            if len(self.losses) >= self.budget_steps:
                break
            record = self.nmf.step(self.optimizer)
            self._observe_loss(record.loss)
            self.lrs.append(record.lr)
            self.first = record.loss if self.first is None else self.first
            if has_diverged(record.loss, self.first):
                return self._diverged()
            self.scheduler.step(record.loss)
            if self.agent_steps is not None:
                break
        if len(self.losses) == self.budget_steps and self.agent_steps is None:
            final = self.nmf.loss()
            self._observe_loss(final)
            if has_diverged(final, self.first):
                return self._diverged()
        done = self.agent_steps is not None
        truncated = not done and len(self.losses) > self.budget_steps
        if truncated:
            self.agent_steps = self.budget_steps + 1
        reward = self._pay()
        if truncated and self.final_weight > 0:
            reward += self.final_weight * (math.log(self.base_final) - math.log(self.losses[-1]))
        obs = self.scheduler.observe()
        return obs, reward, done, truncated, self._info()

    # -- helpers ---------------------------------------------------------------------------------
    def _observe_loss(self, loss: float) -> None:
        if self.agent_steps is None and loss <= self.target:
            self.agent_steps = len(self.losses)
        self.losses.append(loss)

    def _pay(self) -> float:
        """Reward = change of ``(base unreached - agent unreached) / S_base`` counts so far."""
        seen = len(self.losses) if self.agent_steps is None else self.budget_steps + 1
        agent_unreached = seen if self.agent_steps is None else self.agent_steps
        total = (min(self.base_steps, seen) - agent_unreached) / max(self.base_steps, 1)
        reward, self.paid = total - self.paid, total
        return float(reward)

    def _diverged(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        return obs, -self.divergence_penalty, True, False, self._info(diverged=True)

    def _info(self, diverged: bool = False) -> dict[str, Any]:
        return {"steps": len(self.losses), "agent_steps": self.agent_steps,
                "base_steps": self.base_steps, "correction": self.scheduler.correction,
                "diverged": diverged}


# -- PPO -----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class NMFResidualTrainConfig(PPOSettings):
    """PPO and environment settings of a residual policy over an NMF base schedule (PPO's
    settings from :class:`~learnlr.rl.training.PPOSettings`, with this trainer's defaults)."""

    timesteps: int = 40_000
    learning_rate: float = 1e-3
    """PPO's Adam LR."""
    n_steps: int = 256
    gamma: float = 1.0
    log_std_init: float = -0.5
    """Initial exploration std exp(-0.5) ~ 0.6 in ``a``, around the base's mean action 0."""
    budget_steps: int = 400
    steps_per_action: int = 10
    max_correction: float = 4.0
    final_weight: float = 0.0
    """See :class:`NMFResidualEnv`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("budget_steps", "steps_per_action"):
            check_positive_int(name, getattr(self, name))
        if not (1.0 < self.max_correction <= 100.0):
            raise ValueError(f"max_correction must be in (1, 100], got {self.max_correction}")


def make_residual_ppo(config: NMFResidualTrainConfig,
                      pool: Sequence[tuple[NMFInstance, InstanceMeasure]], base: str) -> Any:
    """An SB3 PPO model on ``n_envs`` seeded copies of :class:`NMFResidualEnv`.

    The actor's output layer starts at zero, so the initial policy's mean action is 0: PPO
    starts from the base schedule itself.
    """
    from stable_baselines3.common.env_util import make_vec_env

    from learnlr.rl.training import ppo_model

    env_kwargs = {"pool": list(pool), "base": base, "budget_steps": config.budget_steps,
                  "steps_per_action": config.steps_per_action,
                  "max_correction": config.max_correction, "final_weight": config.final_weight}
    vec_env = make_vec_env(NMFResidualEnv, n_envs=config.n_envs, seed=config.seed,
                           env_kwargs=env_kwargs)
    model = ppo_model(vec_env, config)
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
    return model


def train_residual_policy(config: NMFResidualTrainConfig,
                          pool: Sequence[tuple[NMFInstance, InstanceMeasure]], base: str, *,
                          training: dict[str, Any] | None = None,
                          partial: str | Path | None = None) -> PolicyNetwork:
    """Train with PPO and export the actor (``kind="nmf_residual"``; provenance in ``training``).

    With ``partial`` (a path stem) the actor is saved there after every PPO update and on
    Ctrl-C (:class:`learnlr.rl.partial.TrainingInterrupted`)."""
    from learnlr.rl.partial import learn

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = make_residual_ppo(config, pool, base)
    record = {"algorithm": "PPO (stable-baselines3)", "config": asdict(config), "base": base,
              "max_correction": config.max_correction, **(training or {})}

    def config_for(extra: dict[str, Any]) -> PolicyConfig:
        return PolicyConfig(hidden_sizes=list(config.hidden_sizes), activation="tanh",
                            steps_per_action=config.steps_per_action,
                            max_log_change=math.log(config.max_correction),
                            feature_names=list(FEATURE_SETS[KIND]), kind=KIND,
                            workload="nmf", training={**record, **extra})

    return learn(model, config.timesteps, config_for,
                 partial=None if partial is None else Path(partial))
