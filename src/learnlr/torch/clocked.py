"""GreedyLR that decides on evaluations: the optimizer step moves the clock, decide() decides.

:class:`EvalGreedyLR` is the public form, for a plain PyTorch loop that evaluates::

    sched = EvalGreedyLR(opt, total_steps=N)
    for step in range(N):
        ...; opt.step()
        sched.step(loss)              # the budget envelope's clock, and the brake
        if (step + 1) % eval_every == 0:
            sched.decide(val_loss)    # one GreedyLR decision

:class:`ClockedGreedyLR` is the machinery the HF and Lightning eval modes build on. HF's Trainer
and Lightning step a scheduler once per optimizer step *without* a metric, and the metric arrives
elsewhere (an evaluation, a Lightning hook). Here ``step()`` with no argument only
advances the budget envelope by one optimizer step, and :meth:`ClockedGreedyLR.decide` makes one
GreedyLR decision on a metric, with the same phase rules as :class:`learnlr.GreedyLR` (no decision
on a warmup update, no increase inside the anneal). Shared by both integrations and the
benchmark's ``greedy_eval_budget``.

Two signals: with ``brake=margin`` (the eval modes' default with a budget), ``tick(train_loss)``
also feeds the per-step training loss to a :class:`learnlr.control.brake.LossBrake`, which takes
one descent at once when the loss turns unstable between two evaluations. Under
``torch.distributed`` that loss is reduced across ranks on every step (``reduce=``, one small
collective per step; ``sync_every`` does not apply to it), so every rank takes the same descents.
With a brake and an LR warmup, the losses of the warmup go to a
:class:`learnlr.control.brake.WarmupGuard` instead: a loss that blows up while the LR ramps ends
the warmup at once, at a tenth of the LR where the loss was best.
"""

from __future__ import annotations

from typing import Any

import torch

from learnlr.control.brake import DEFAULT_MARGIN, GUARD_WATCH, LossBrake, WarmupGuard
from learnlr.control.budget import Budget, check_total_steps
from learnlr.control.greedy import DECREASE, HOLD
from learnlr.control.schedule import (
    EVAL_MIN_LR_RATIO,
    REACTIVE_DEFAULTS,
    eval_warmup_steps,
    gate,
    observes,
    per_eval_defaults,
)
from learnlr.torch.distributed import resolve_reducer
from learnlr.torch.greedy import GreedyLR, _to_float

_UNRESOLVED = object()


class ClockedGreedyLR(GreedyLR):
    """A :class:`learnlr.GreedyLR` whose ``step()`` (no metric) is one optimizer step of the clock
    and whose :meth:`decide` is one decision. ``step(metric)`` behaves like GreedyLR's.

    ``brake``: None (off), or the margin of a :class:`~learnlr.control.brake.LossBrake` over the
    training losses passed to :meth:`tick` / :meth:`check_train_loss` (window: the paper's 50
    losses), and with an LR warmup a :class:`~learnlr.control.brake.WarmupGuard` over the
    warmup's losses. ``min_lr_ratio``: with ``min_lr=None``, the floor as a fraction of each
    group's initial LR (None: GreedyLR's own default)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, brake: float | None = None,
                 min_lr_ratio: float | None = None, **kwargs: Any) -> None:
        self._decide_reducer: Any = _UNRESOLVED
        if min_lr_ratio is not None and kwargs.get("min_lr") is None:
            if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, (int, float)) or not (
                0.0 <= min_lr_ratio <= 1.0
            ):
                raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {min_lr_ratio!r}")
            # GreedyLR's own rule for the LR its bounds are relative to (a LinearLR warmup built
            # before it sets "initial_lr").
            kwargs["min_lr"] = [min_lr_ratio * float(g.get("initial_lr", g["lr"]))
                                for g in optimizer.param_groups]
        super().__init__(optimizer, **kwargs)
        self.brake: LossBrake | None = None
        if brake is not None:
            # The paper's 50-loss window whatever the budget: a mean of fewer minibatch losses
            # doubles on noise alone once the loss is small and heavy-tailed (a 3-loss window
            # braked a well-tuned toy run).
            self.brake = LossBrake(REACTIVE_DEFAULTS["window"], brake)
        self.guard: WarmupGuard | None = None
        if brake is not None and self.budget is not None and self.budget.warmup_steps:
            self.guard = WarmupGuard(margin=brake)

    def step(self, metric: Any = None) -> None:  # type: ignore[override]
        if metric is not None or self._in_initial_step():
            super().step(metric)
        else:
            self.tick()

    def tick(self, train_loss: Any = None) -> None:
        """One optimizer step done: the envelope moves; no decision. ``train_loss`` (that step's
        training loss) goes to the brake, if there is one."""
        self.last_epoch += 1
        self._step_count += 1
        if self.budget is not None:
            self._write_lrs()
        if train_loss is not None:
            self.check_train_loss(train_loss)

    def _reduced(self, metric: Any) -> float:
        """``metric`` as a float, reduced across ranks when distributed (``reduce=``)."""
        value = _to_float(metric)  # a one-element tensor or a number; 10**400 is inf
        if self._decide_reducer is _UNRESOLVED:  # torch.distributed may initialise late
            self._decide_reducer = resolve_reducer(self.reduce, self.process_group)
        if self._decide_reducer is not None:
            value = self._decide_reducer.reduce_floats([value])[0]
        return value

    def check_train_loss(self, train_loss: Any) -> None:
        """Feed the training loss of the update just counted to the brake (no-op without one):
        one descent now if it fires. Warmup updates are not shown to it."""
        if self.brake is None:
            return
        value = self._reduced(train_loss)  # every rank must take the same descent
        if self.budget is None:
            if self.brake.push(value):
                self._apply(DECREASE)
            return
        step = self.last_epoch - 1  # the update whose loss this is
        if not observes(self.budget, step):
            if self.guard is not None and step < self.budget.warmup_steps:
                restart = self.guard.push(value, self._envelope_warmup[step])
                if restart is not None:
                    self._end_warmup(restart)
            return
        if self.brake.push(value):
            self.controller.apply(DECREASE)
            self._write_lrs()
        # The guard also watches the first steps at the peak LR (GUARD_WATCH x the warmup's
        # length in all), where SGD networks at 10x their LR die faster than the brake's 50-step
        # mean can see; there the ramp is 1. (Unfired, the warmup is still the one it started.)
        guard = self.guard  # (fired: it never fires again; skip the window test every step)
        if (guard is not None and not guard.fired
                and step < round(GUARD_WATCH * self.budget.warmup_steps)):
            restart = guard.push(value, 1.0)
            if restart is not None:
                self._restart_lrs(restart)

    def _end_warmup(self, restart: float) -> None:
        """The guard fired in the warmup: no more warmup, and GreedyLR's LRs become ``restart`` x
        what they were (within their bounds). The budget with the shortened warmup is in the
        state, so a resumed run keeps it."""
        b = self.budget
        self._use_budget(Budget(b.total_steps, self.last_epoch, b.anneal_steps, b.shape))
        self._restart_lrs(restart)

    def _restart_lrs(self, restart: float) -> None:
        c = self.controller
        c.lrs = [min(max(lr * restart, lo), hi) for lr, lo, hi in zip(c.lrs, c.min_lrs, c.max_lrs)]
        self._write_lrs()

    def decide(self, metric: Any) -> None:
        """One decision on ``metric`` (a number or a 0-d tensor), reduced across ranks when
        distributed (``reduce=``), after the updates counted by the clock so far."""
        value = self._reduced(metric)
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

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["brake"] = None if self.brake is None else self.brake.state_dict()
        state["warmup_guard"] = None if self.guard is None else self.guard.state_dict()
        return state

    def _load_state(self, state_dict: dict[str, Any]) -> None:
        super()._load_state(state_dict)
        saved = state_dict.get("brake")
        if self.brake is not None and saved is not None:
            self.brake.load_state_dict(saved)
        guard = state_dict.get("warmup_guard")  # (states written before the guard: none)
        if self.guard is not None and guard is not None:
            self.guard.load_state_dict(guard)


def eval_mode_defaults(total_steps: int | None) -> dict[str, Any]:
    """What every per-evaluation mode builds on (EvalGreedyLR, the HF and Lightning eval modes):
    :func:`learnlr.control.schedule.per_eval_defaults` and, with a budget (``total_steps``), the
    brake, the LR warmup (:func:`learnlr.control.schedule.eval_warmup_steps`) and the floor at
    :data:`learnlr.control.schedule.EVAL_MIN_LR_RATIO` of the initial LR."""
    defaults = per_eval_defaults(total_steps is not None)
    if total_steps is not None:
        defaults["brake"] = DEFAULT_MARGIN
        defaults["min_lr_ratio"] = EVAL_MIN_LR_RATIO
        defaults["warmup_steps"] = eval_warmup_steps(check_total_steps(total_steps))
    return defaults


class EvalGreedyLR(ClockedGreedyLR):
    """GreedyLR deciding once per evaluation on the validation metric, with the training loss as
    a brake: the budget-aware per-evaluation mode for a plain PyTorch loop.

    ``step(train_loss)`` after every optimizer step moves the budget envelope (warmup, final
    anneal) and feeds the training loss to the brake (``step()`` with no loss: the clock only);
    ``decide(val_metric)`` after each evaluation makes one GreedyLR decision. Defaults:
    :func:`learnlr.control.schedule.per_eval_defaults` (with ``total_steps``: descend on every
    evaluation that sets no new best, by ``0.8 ** k`` on the k-th in a row, climb by 1 / 0.8 on
    every 6th that does and at once on one that gains at least as much as the new best before it,
    never back to an LR at which the metric doubled its best) and, with ``total_steps``, the
    brake at its default margin (``brake=None``: off), a linear LR warmup over the first 5 % of
    the steps (``warmup_steps=0``: none) and an LR floor at 0.01x the initial LR (``min_lr=``
    sets it). The HF Trainer (``use_greedy_lr(trainer, on="eval")``) and Lightning
    (``interval="epoch"``) build the same.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = EvalGreedyLR(opt, total_steps=100)
    >>> for _ in range(10):
    ...     sched.step(1.0)
    >>> sched.decide(0.5); sched.decide(0.6)   # no new best on the second: one descent
    >>> round(sched.get_last_lr()[0], 6)
    0.08
    >>> sched.decide(0.7)   # the second in a row: 0.8 ** 2
    >>> round(sched.get_last_lr()[0], 6)
    0.0512
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_steps: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(optimizer, total_steps=total_steps,
                         **{**eval_mode_defaults(total_steps), **kwargs})

    def step(self, train_loss: Any = None) -> None:  # type: ignore[override]
        """One optimizer step done: the clock moves; ``train_loss`` (optional) feeds the brake."""
        if self._in_initial_step():
            super().step()
            return
        self.tick(train_loss)
