"""PPO training of an LR policy on the environments of :func:`learnlr.rl.make_env`
(needs the ``learnlr[rl]`` extra).

The trained actor is exported to a :class:`PolicyNetwork` (safetensors + JSON); SB3's own
``.zip`` (which pickles parts of the model) is never written or read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from learnlr.nmf.problems import check_seed
from learnlr.rl.env import REWARDS, make_env
from learnlr.rl.policy import PolicyConfig, PolicyNetwork

__all__ = ["PPOSettings", "TrainConfig", "check_warm_start", "load_actor_into_sb3", "make_ppo",
           "ppo_model", "train_policy"]


@dataclass(kw_only=True)
class PPOSettings:
    """PPO's settings, the one definition every trainer's config extends (the direct policy,
    the NMF residual, the GreedyLR residual); each sets its own defaults. :func:`ppo_model`
    builds PPO from them."""

    timesteps: int = 100_000
    """Total environment steps (decisions) of PPO training."""
    seed: int = 0
    """Seeds PPO, the policy initialization and the training episode stream."""
    n_envs: int = 4
    """Parallel environments (SB3 vectorised envs)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [32, 32])
    """Actor and critic hidden layer widths."""
    learning_rate: float = 3e-4
    """Adam learning rate of PPO."""
    n_steps: int = 512
    """Rollout length per environment between PPO updates."""
    batch_size: int = 256
    """PPO minibatch size."""
    n_epochs: int = 10
    """PPO epochs per update."""
    gamma: float = 0.99
    """Discount factor."""
    log_std_init: float = -0.5
    """Initial log standard deviation of the Gaussian action."""

    def __post_init__(self) -> None:
        for name in ("timesteps", "n_envs", "n_steps", "batch_size", "n_epochs"):
            check_positive_int(name, getattr(self, name))
        check_seed("seed", self.seed)
        if not (0 < self.gamma <= 1):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not (self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def check_positive_int(name: str, value: Any) -> None:
    """A ValueError naming ``name`` unless ``value`` is an integer >= 1 (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(kw_only=True)
class TrainConfig(PPOSettings):
    """PPO and environment settings of a directly learned LR policy; the main fields are
    ``learnlr rl train`` options (the rest keep their defaults on the command line)."""

    budget_steps: int = 400
    """SGD steps per episode."""
    steps_per_action: int = 10
    """SGD steps per decision."""
    max_log_change: float = math.log(2.0)
    """Largest LR change per decision, in log space."""
    min_relative_lr: float = 1e-2
    """LR floor as a fraction of the stability bound (deeper decay only stalls the run)."""
    workloads: list[str] = field(default_factory=lambda: ["nmf"])
    """``["nmf"]``: train on :class:`LRControlEnv`; benchmark workload names: train on
    :class:`learnlr.rl.workload_env.WorkloadLRControlEnv` (one drawn per episode)."""
    optimizers: list[str] = field(default_factory=lambda: ["sgd", "adamw"])
    """Benchmark workloads only: optimizer columns drawn per episode."""
    episode_steps: int | None = None
    """Benchmark workloads only: optimizer steps per episode (None = the suite's budgets)."""
    suite: str = "quick"
    """Benchmark workloads only: budget key and base-LR grid."""
    base_lrs: dict[str, float] = field(default_factory=dict)
    """Benchmark workloads only: ``"workload/optimizer" -> base LR`` (others: grid centre)."""
    terminal_weight: float = 1.0
    """Benchmark workloads only: weight of the terminal validation-loss reward."""
    reward: str = "log_decrease"
    """NMF reward: ``"log_decrease"`` (final loss), ``"area"`` (area under the log-loss curve)
    or ``"area_final"`` (their sum); see :class:`learnlr.rl.env.LRControlEnv`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("budget_steps", "steps_per_action"):
            check_positive_int(name, getattr(self, name))
        if not self.workloads or ("nmf" in self.workloads and len(self.workloads) > 1):
            raise ValueError("workloads must be ['nmf'] or benchmark workload names (not mixed), "
                             f"got {self.workloads}")
        if self.episode_steps is not None and (not isinstance(self.episode_steps, int)
                                               or self.episode_steps <= self.steps_per_action):
            raise ValueError(f"episode_steps must be None or an integer > steps_per_action, "
                             f"got {self.episode_steps!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {self.reward!r}")
        if self.uses_benchmark_workloads:
            self.make_env_kwargs()  # raises ValueError for unknown names and bad base LRs

    @property
    def uses_benchmark_workloads(self) -> bool:
        """True when episodes are benchmark training runs rather than NMF instances."""
        return self.workloads != ["nmf"]

    def make_env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`WorkloadLRControlEnv` for these settings (validated)."""
        from learnlr.rl.workload_env import WorkloadLRControlEnv

        base_lrs: dict[tuple[str, str], float] = {}
        for key, value in self.base_lrs.items():
            workload, sep, optimizer = key.partition("/")
            if not sep:
                raise ValueError(f"base_lrs keys must be 'workload/optimizer', got {key!r}")
            base_lrs[(workload, optimizer)] = float(value)
        kwargs: dict[str, Any] = {
            "workloads": list(self.workloads), "optimizers": list(self.optimizers),
            "suite": self.suite, "budget_steps": self.episode_steps,
            "base_lr": base_lrs or None, "steps_per_action": self.steps_per_action,
            "max_log_change": self.max_log_change, "min_relative_lr": self.min_relative_lr,
            "terminal_weight": self.terminal_weight,
        }
        WorkloadLRControlEnv(**kwargs)  # validation only: builds no data until reset()
        return kwargs

    def policy_config(self, training: dict[str, Any] | None = None) -> PolicyConfig:
        """The :class:`PolicyConfig` matching these settings."""
        return PolicyConfig(hidden_sizes=list(self.hidden_sizes), activation="tanh",
                            steps_per_action=self.steps_per_action,
                            max_log_change=self.max_log_change,
                            min_relative_lr=self.min_relative_lr,
                            workload=",".join(self.workloads), training=training or {})


def make_ppo(config: TrainConfig) -> Any:
    """An SB3 PPO model on ``n_envs`` seeded copies of :func:`learnlr.rl.env.make_env`'s
    environment (NMF, or :class:`~learnlr.rl.workload_env.WorkloadLRControlEnv` for benchmark
    workloads)."""
    from stable_baselines3.common.env_util import make_vec_env

    if config.uses_benchmark_workloads:
        env_kwargs = config.make_env_kwargs()
        env_kwargs["workload"] = env_kwargs.pop("workloads")
    else:
        env_kwargs = {"workload": "nmf", "budget_steps": config.budget_steps,
                      "steps_per_action": config.steps_per_action,
                      "max_log_change": config.max_log_change,
                      "min_relative_lr": config.min_relative_lr, "reward": config.reward}
    vec_env = make_vec_env(make_env, n_envs=config.n_envs, seed=config.seed,
                           env_kwargs=env_kwargs)
    return ppo_model(vec_env, config)


def ppo_model(vec_env: Any, config: PPOSettings, **ppo_kwargs: Any) -> Any:
    """SB3 PPO with the project's actor/critic (``config.hidden_sizes`` tanh MLPs, Gaussian
    action with ``config.log_std_init``) and ``config``'s PPO settings, on the CPU: the one PPO
    construction of every trainer (direct, NMF residual, GreedyLR residual)."""
    from stable_baselines3 import PPO

    policy_kwargs = {"net_arch": {"pi": list(config.hidden_sizes), "vf": list(config.hidden_sizes)},
                     "activation_fn": nn.Tanh, "log_std_init": config.log_std_init}
    return PPO("MlpPolicy", vec_env, learning_rate=config.learning_rate, n_steps=config.n_steps,
               batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma,
               policy_kwargs=policy_kwargs, seed=config.seed, device="cpu", verbose=0,
               **ppo_kwargs)


def load_actor_into_sb3(model: Any, network: PolicyNetwork) -> None:
    """Copy a :class:`PolicyNetwork` (e.g. from behaviour cloning) into an SB3 PPO actor."""
    sb3_linears = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    ours = [m for m in network.body if isinstance(m, nn.Linear)]
    if [m.weight.shape for m in sb3_linears] != [m.weight.shape for m in ours]:
        raise ValueError(
            f"the network's layer shapes {[tuple(m.weight.shape) for m in ours]} do not match "
            f"the PPO actor's {[tuple(m.weight.shape) for m in sb3_linears]} (hidden_sizes)")
    with torch.no_grad():
        for src, dst in zip(ours, sb3_linears, strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        model.policy.action_net.weight.copy_(network.head.weight)
        model.policy.action_net.bias.copy_(network.head.bias)


def check_warm_start(network: PolicyNetwork, config: TrainConfig) -> None:
    """A ValueError unless ``network`` can start PPO of ``config``: a direct policy (residual
    ones see other observations) with ``config.hidden_sizes``. Checked before PPO is built."""
    kind, sizes = network.config.kind, network.config.hidden_sizes
    if kind != "direct":
        raise ValueError(f"the warm start must be a 'direct' policy (it sets the LR itself), got "
                         f"kind {kind!r}")
    if list(sizes) != list(config.hidden_sizes):
        raise ValueError(f"the warm start's hidden_sizes {list(sizes)} do not match the trained "
                         f"actor's {list(config.hidden_sizes)}")


def train_policy(
    config: TrainConfig,
    *,
    progress: bool = False,
    warm_start: PolicyNetwork | None = None,
    command: str = "",
    partial: str | Path | None = None,
) -> PolicyNetwork:
    """Train with PPO (optionally starting from a cloned actor) and export the actor.

    With ``partial`` (a path stem) the actor is saved there after every PPO update and on
    Ctrl-C (then :class:`learnlr.rl.partial.TrainingInterrupted` is raised).
    """
    from learnlr.rl.partial import learn

    if warm_start is not None:
        check_warm_start(warm_start, config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # SB3 also seeds; this covers any remaining global use
    model = make_ppo(config)
    if warm_start is not None:
        load_actor_into_sb3(model, warm_start)
    training = {
        "algorithm": "PPO (stable-baselines3)",
        "config": asdict(config),
        "warm_start": warm_start is not None,
        "command": command,
    }
    return learn(model, config.timesteps,
                 lambda extra: config.policy_config({**training, **extra}),
                 partial=None if partial is None else Path(partial), progress=progress)
