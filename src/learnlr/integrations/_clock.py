"""GreedyLR driven by a trainer: the trainer's step() moves the clock, decide() takes a metric.

HF's Trainer and Lightning step a scheduler once per optimizer step *without* a metric, and the
metric arrives elsewhere (an evaluation, a Lightning hook). Here ``step()`` with no argument only
advances the budget envelope by one optimizer step, and :meth:`ClockedGreedyLR.decide` makes one
GreedyLR decision on a metric, with the same phase rules as :class:`learnlr.GreedyLR` (no decision
on a warmup update, no increase inside the anneal). Shared by both integrations.
"""

from __future__ import annotations

from typing import Any

import torch

from learnlr.control.greedy import HOLD
from learnlr.control.schedule import gate, observes
from learnlr.torch.distributed import resolve_reducer
from learnlr.torch.greedy import GreedyLR

_UNRESOLVED = object()


class ClockedGreedyLR(GreedyLR):
    """A :class:`learnlr.GreedyLR` whose ``step()`` (no metric) is one optimizer step of the clock
    and whose :meth:`decide` is one decision. ``step(metric)`` behaves like GreedyLR's."""

    def __init__(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> None:
        self._decide_reducer: Any = _UNRESOLVED
        super().__init__(optimizer, **kwargs)

    def step(self, metric: Any = None) -> None:  # type: ignore[override]
        if metric is not None or self._in_initial_step():
            super().step(metric)
        else:
            self.tick()

    def tick(self) -> None:
        """One optimizer step done: the envelope moves; no decision."""
        self.last_epoch += 1
        self._step_count += 1
        if self.budget is not None:
            self._write_lrs()

    def decide(self, metric: Any) -> None:
        """One decision on ``metric`` (a number or a 0-d tensor), reduced across ranks when
        distributed (``reduce=``), after the updates counted by the clock so far."""
        value = metric.item() if isinstance(metric, torch.Tensor) else float(metric)
        if self._decide_reducer is _UNRESOLVED:  # torch.distributed may initialise late
            self._decide_reducer = resolve_reducer(self.reduce, self.process_group)
        if self._decide_reducer is not None:
            value = self._decide_reducer.reduce_floats([value])[0]
        if self.budget is None:
            decision = self.controller.observe(value)
            if decision != HOLD:
                self._apply(decision)
            return
        # The metric follows the update made at step last_epoch - 1.
        if not observes(self.budget, self.last_epoch - 1):
            return  # an LR-warmup update: the loss falls because the LR ramps
        decision = gate(self.controller.observe(value), self.budget, self.last_epoch)
        if decision != HOLD:
            self.controller.apply(decision)
            self._write_lrs()
