"""The RL schedules of the benchmark (``rl``, ``rl_deep``): shipped PPO policies as
:class:`~learnlr.rl.scheduler.RLScheduler`, registered into :data:`learnlr.bench.schedules.SCHEDULES`
when this module is imported (the benchmark imports it through :mod:`learnlr.plugins`).

Light on purpose: importing it loads neither gymnasium nor stable-baselines3; the scheduler and
the policy files are only read when a cell is built or hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

from learnlr.bench.schedules import (
    BuildContext,
    ScheduleSpec,
    TrainingHooks,
    make_optimizer,
    register_schedule,
)

__all__ = ["policy_fingerprint"]


def policy_fingerprint(name: str) -> Callable[[], str]:
    """Digest of a shipped policy's files: part of the cell's config hash, so a retrained policy
    does not reuse the cells the old one produced."""

    def digest() -> str:
        from learnlr.rl.scheduler import pretrained_path

        stem = pretrained_path(name)
        h = hashlib.sha256()
        for suffix in (".safetensors", ".json"):
            h.update(stem.with_suffix(suffix).read_bytes())
        return f"policy-sha256:{h.hexdigest()[:16]}"

    return digest


def _pretrained(name: str) -> Callable[[Sequence[torch.nn.Parameter], BuildContext], TrainingHooks]:
    def build(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
        from learnlr.rl.scheduler import RLScheduler

        opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
        # No stability bound on a benchmark workload: the LR is relative to the base LR and
        # capped at 10x; one decision every 10 steps.
        sched = RLScheduler.pretrained(name, opt, total_steps=ctx.budget_steps)
        return TrainingHooks(opt, sched, step_on="step_loss")

    return build


# `rl`: the PPO policy trained on NMF only (a transfer test, not a tuned deep-net agent).
# `rl_deep`: trained on benchmark workloads (learnlr.rl.workload_env; the train/held-out split
# is in its JSON). Placed after hf_greedy, where they always stood in the report's order.
register_schedule(ScheduleSpec(
    "rl", "adaptive",
    "learnlr RLScheduler: PPO policy trained on NMF, stepped on the training loss",
    _pretrained("nmf"), requires=("safetensors",), fingerprint=policy_fingerprint("nmf"),
), after="hf_greedy")
register_schedule(ScheduleSpec(
    "rl_deep", "adaptive",
    "learnlr RLScheduler: PPO policy trained on benchmark workloads, training loss",
    _pretrained("deep"), requires=("safetensors",), fingerprint=policy_fingerprint("deep"),
), after="rl")
