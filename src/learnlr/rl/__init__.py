"""Reinforcement-learned learning-rate schedules.

- :func:`make_env`: the gymnasium environment for a workload, one episode = one training run
  (:class:`LRControlEnv` for ``"nmf"``, :class:`~learnlr.rl.workload_env.WorkloadLRControlEnv`
  for benchmark workloads).
- :class:`RLScheduler`: a trained policy as a ``torch.optim.lr_scheduler.LRScheduler``.
- :func:`load_policy` / :func:`save_policy`: safetensors + JSON, no pickle.
- :mod:`learnlr.rl.training` (PPO, needs stable-baselines3) and :mod:`learnlr.rl.cloning`
  (behaviour cloning warm start).

Example:
    >>> import torch
    >>> from learnlr.nmf import StochasticNMF, planted_problem
    >>> from learnlr.rl import RLScheduler
    >>> nmf = StochasticNMF(planted_problem(30, 20, 3, seed=0))
    >>> opt = torch.optim.SGD(nmf.parameters(), lr=0.1 * nmf.stability_bound())
    >>> sched = RLScheduler.pretrained("nmf", opt, total_steps=100, lr_bound=nmf.stability_bound)
    >>> for _ in range(100):
    ...     sched.step(nmf.step(opt).loss)
    >>> nmf.loss() < 1.0
    True
"""

from learnlr._lazy import lazy_names

__all__ = [
    "FEATURE_NAMES",
    "PRETRAINED",
    "WORKLOADS",
    "LRControlEnv",
    "NMFInstance",
    "NMFInstanceDistribution",
    "ObservationBuilder",
    "PolicyConfig",
    "PolicyNetwork",
    "RLScheduler",
    "load_policy",
    "make_env",
    "pretrained_path",
    "save_policy",
]

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("WORKLOADS", "LRControlEnv", "NMFInstance", "NMFInstanceDistribution",
                     "make_env"), "learnlr.rl.env"),
    **dict.fromkeys(("FEATURE_NAMES", "ObservationBuilder"), "learnlr.rl.features"),
    **dict.fromkeys(("PolicyConfig", "PolicyNetwork", "load_policy", "save_policy"),
                    "learnlr.rl.policy"),
    **dict.fromkeys(("PRETRAINED", "RLScheduler", "pretrained_path"), "learnlr.rl.scheduler"),
})
