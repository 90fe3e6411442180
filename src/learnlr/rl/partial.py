"""PPO runs that keep their work: the actor is saved while training and on Ctrl-C.

A training run takes tens of minutes and its policy used to be written only at the end, so a
Ctrl-C or a crash lost all of it. :func:`learn` is the one ``model.learn`` of every trainer
(direct, NMF residual, GreedyLR residual): after every ``every`` PPO updates
:class:`PartialPolicySaver` exports the actor to a partial policy (safetensors + JSON, as
:func:`~learnlr.rl.policy.save_policy` writes any policy; ``training["partial"]`` is true and
``training["timesteps_done"]`` says how far it got), and a Ctrl-C exports the actor as it is
then and raises :class:`TrainingInterrupted`.

Needs stable-baselines3 (``learnlr[rl]``); the trainers import this module only when they train.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback

from learnlr.rl.policy import PolicyConfig, PolicyNetwork, export_sb3_policy, save_policy

__all__ = ["PartialPolicySaver", "TrainingInterrupted", "learn", "partial_path"]

ConfigFor = Callable[[dict[str, Any]], PolicyConfig]
"""``training provenance -> PolicyConfig`` of the policy being trained."""


def partial_path(out: str | Path) -> Path:
    """Where a run writing the policy ``out`` keeps its partial policy: ``<out>.partial``
    (files ``<out>.partial.safetensors`` and ``<out>.partial.json``)."""
    stem = Path(out)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".partial")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during PPO training, after the actor was saved (a KeyboardInterrupt still, so a
    caller that does not know this class stops as on any Ctrl-C).

    Attributes:
        timesteps: environment steps PPO had taken.
        path: the partial policy's path stem, or None when the run kept no partial policy.
    """

    def __init__(self, timesteps: int, path: Path | None) -> None:
        where = f"; partial policy saved to {path}" if path is not None else ""
        super().__init__(f"interrupted at {timesteps} timesteps{where}")
        self.timesteps, self.path = timesteps, path


class PartialPolicySaver(BaseCallback):
    """Export the PPO actor to ``path`` after every ``every`` PPO updates, and on demand.

    Args:
        path: the partial policy's path stem.
        config_for: the policy's config from a training provenance dict.
        every: PPO updates (rollouts) between two saves.
    """

    def __init__(self, path: Path, config_for: ConfigFor, every: int = 1) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.path, self.config_for, self.every = path, config_for, every
        self.rollouts = 0
        self.started = time.perf_counter()

    def _on_rollout_start(self) -> None:
        # A rollout starts right after the previous one's update (SB3's learn loop), so the
        # actor saved here includes every update so far; the first rollout has none to save.
        if self.rollouts and self.rollouts % self.every == 0:
            self.save()
        self.rollouts += 1

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        """Write the actor as it is now; returns the path stem."""
        done = int(self.model.num_timesteps)
        config = self.config_for({"partial": True, "timesteps_done": done,
                                  "seconds": round(time.perf_counter() - self.started, 1)})
        # Building the exported network initialises layers from torch's global generator, which
        # PPO samples its actions from: forked, so saving never changes the training run.
        with torch.random.fork_rng(devices=[]):
            network = export_sb3_policy(self.model, config)
        save_policy(network, self.path)
        return self.path


def learn(model: Any, timesteps: int, config_for: ConfigFor, *, partial: Path | None = None,
          progress: bool = False, every: int = 1) -> PolicyNetwork:
    """``model.learn(timesteps)``, saving the actor to ``partial`` as it goes (when given).

    Returns the trained actor, exported with the config ``config_for({"seconds": ...})``. On
    Ctrl-C the actor is saved to ``partial`` and :class:`TrainingInterrupted` is raised.
    """
    started = time.perf_counter()
    callbacks: list[BaseCallback] = []
    saver = None
    if partial is not None:
        saver = PartialPolicySaver(partial, config_for, every)
        callbacks.append(saver)
    bar = ProgressBarCallback() if progress else None
    if bar is not None:
        callbacks.append(bar)
    try:
        model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    except KeyboardInterrupt:
        if bar is not None and hasattr(bar, "pbar"):
            bar.pbar.close()  # SB3 closes it only at a normal end; the message needs the line
        path = saver.save() if saver is not None else None
        raise TrainingInterrupted(int(model.num_timesteps), path) from None
    seconds = round(time.perf_counter() - started, 1)
    return export_sb3_policy(model, config_for({"seconds": seconds}))
