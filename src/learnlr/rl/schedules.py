"""The RL schedules: shipped PPO policies as :class:`~learnlr.rl.scheduler.RLScheduler`,
registered when this module is imported (the registries import it through
:mod:`learnlr.plugins`) into the benchmark's :data:`learnlr.bench.schedules.SCHEDULES`
(``rl``, ``rl_deep``) and the NMF solver's :data:`learnlr.nmf.schedules.NMF_SCHEDULES` (``rl``,
``rl_residual``).

Light on purpose: importing it loads neither gymnasium nor stable-baselines3; the scheduler and
the policy files are only read when a cell is built or hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from learnlr.bench.schedules import (
    BuildContext,
    ScheduleSpec,
    TrainingHooks,
    make_optimizer,
    register_schedule,
    schedule_fingerprint,
)
from learnlr.nmf.schedules import NMFSchedule, register_nmf_schedule

__all__ = ["learned_schedule", "policy_digest", "policy_fingerprint", "policy_hooks"]


def policy_digest(stem: Path) -> str:
    """Digest of a saved policy's two files (``stem.safetensors`` and ``stem.json``)."""
    from learnlr.rl.policy import policy_files

    h = hashlib.sha256()
    for path in policy_files(stem):  # the files load_policy(stem) reads
        h.update(path.read_bytes())
    return f"policy-sha256:{h.hexdigest()[:16]}"


def policy_fingerprint(name: str) -> Callable[[], str]:
    """Digest of a shipped policy's files: part of the cell's config hash, so a retrained policy
    does not reuse the cells the old one produced."""

    def digest() -> str:
        from learnlr.rl.scheduler import pretrained_path

        return policy_digest(pretrained_path(name))

    return digest


def policy_hooks(policy: Any, params: Sequence[torch.nn.Parameter], optimizer_name: str,
                 lr: float, budget_steps: int) -> TrainingHooks:
    """The optimizer and :class:`~learnlr.rl.scheduler.RLScheduler` of a policy (a
    :class:`~learnlr.rl.policy.PolicyNetwork` or a saved policy's path stem) on a benchmark
    cell. A direct policy acts on the training loss (one decision every 10 steps, LR relative
    to the base LR, capped at 10x); a ``greedy_residual`` policy corrects GreedyLR after each
    evaluation (``step_on="step_loss_then_eval"``)."""
    from learnlr.rl.scheduler import RLScheduler

    opt = make_optimizer(optimizer_name, params, lr)
    sched = RLScheduler(opt, policy, total_steps=budget_steps)
    step_on = "step_loss" if sched.residual is None else "step_loss_then_eval"
    return TrainingHooks(opt, sched, step_on=step_on)


def _pretrained(name: str) -> Callable[[Sequence[torch.nn.Parameter], BuildContext], TrainingHooks]:
    def build(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
        from learnlr.rl.scheduler import pretrained_path

        return policy_hooks(pretrained_path(name), params, ctx.optimizer_name, ctx.base_lr,
                            ctx.budget_steps)

    return build


def _residual_fingerprint() -> str:
    """The policy's digest and its base schedule's defaults: a change to either re-runs
    ``rl_deep``'s cells."""
    from learnlr.rl.scheduler import pretrained_path

    # The base named in the policy's JSON (no weights to load just to read it).
    config = json.loads(pretrained_path("deep").with_suffix(".json").read_text())
    base = config.get("base", "greedy_step")
    return f"{policy_fingerprint('deep')()}+{schedule_fingerprint(base)}"


# `rl`: the PPO policy trained on NMF only (a transfer test, not a tuned deep-net agent).
# `rl_deep`: the residual policy over its base (the policy file names it), trained on the
# benchmark workloads (learnlr.rl.residual_env; its leave-workloads-out figures are in its JSON).
# Placed after hf_greedy, where they always stood in the report's order.
register_schedule(ScheduleSpec(
    "rl", "adaptive",
    "learnlr RLScheduler: PPO policy trained on NMF, stepped on the training loss",
    _pretrained("nmf"), requires=("safetensors",), fingerprint=policy_fingerprint("nmf"),
), after="hf_greedy")
register_schedule(ScheduleSpec(
    "rl_deep", "adaptive",
    "learnlr RLScheduler: PPO residual over budget-aware GreedyLR (a correction set after each "
    "evaluation), trained on the benchmark workloads",
    _pretrained("deep"), requires=("safetensors",), fingerprint=_residual_fingerprint,
), after="rl")


def learned_schedule(policy: Any, budget: int, lr_fraction: float = 1.0) -> NMFSchedule:
    """A policy (a :class:`~learnlr.rl.policy.PolicyNetwork` or a saved policy's path stem) as
    an NMF schedule: a bound-aware :class:`~learnlr.rl.scheduler.RLScheduler`."""

    def factory(optimizer: torch.optim.Optimizer, nmf: Any) -> Any:
        from learnlr.rl.scheduler import RLScheduler

        return RLScheduler(optimizer, policy, total_steps=budget, lr_bound=nmf.stability_bound)

    return NMFSchedule("rl", "rl", lr_fraction, factory)


def _shipped_nmf_policy(budget: int) -> NMFSchedule:
    from learnlr.rl.scheduler import pretrained_path

    path: Path = pretrained_path("nmf")
    return learned_schedule(path, budget)


register_nmf_schedule("rl", _shipped_nmf_policy)


_RL_EXTRA_MODULES = ("gymnasium", "stable_baselines3", "safetensors")
"""The top-level modules of the ``learnlr[rl]`` extra (pyproject.toml)."""


def _shipped_nmf_residual(budget: int) -> NMFSchedule:
    # Imported here: learnlr.rl.nmf_residual loads gymnasium, which this module must not (the
    # nmf command needs only the bench extra, so a missing rl extra is a user's fix, not a bug).
    try:
        from learnlr.rl.nmf_residual import pretrained_residual_schedule
    except ImportError as exc:
        if exc.name not in _RL_EXTRA_MODULES:
            raise
        from learnlr.errors import MissingExtra

        raise MissingExtra(f"schedule 'rl_residual' needs the rl extra (module {exc.name!r} is "
                           f"missing): pip install \"learnlr[rl]\"") from None
    return pretrained_residual_schedule(budget)


register_nmf_schedule("rl_residual", _shipped_nmf_residual)
