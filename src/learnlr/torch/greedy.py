"""GreedyLR as a PyTorch ``LRScheduler``: a thin wrapper over :class:`GreedyController`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from learnlr.control.budget import DEFAULT_ANNEAL_FRACTION, Budget, check_total_steps
from learnlr.control.greedy import HOLD, INCREASE, GreedyController
from learnlr.control.schedule import gate, observes, resolve
from learnlr.torch.distributed import MetricReducer, check_reduce, resolve_reducer

_STATE_VERSION = 2  # 2: budget (total_steps) and the renamed keep_* stages; 1 still loads


_Tensor = torch.Tensor


def _to_float(metric: SupportsFloat) -> float:
    # .item() rather than float(): no "requires_grad" warning when users pass `loss` itself.
    if isinstance(metric, _Tensor):
        if metric.numel() != 1:
            raise ValueError(f"metric must be a number or a one-element tensor, got shape "
                             f"{tuple(metric.shape)}")
        return metric.item()
    try:
        return float(metric)
    except OverflowError:  # an int beyond float range: a non-finite metric, not an error
        return math.inf if metric > 0 else -math.inf


def _state_float(value: float) -> float | str:
    """Strict-JSON form of a float: non-finite values as 'nan' / 'inf' / '-inf'."""
    return value if math.isfinite(value) else repr(value)

_RENAMED = {
    "warmup": "GreedyLR's warmup= was the article's keep-increasing stage and is now "
    "keep_increasing=; for an LR warmup pass warmup_steps=N (with total_steps=)",
    "cooldown": "GreedyLR's cooldown= (the article's keep-decreasing stage) is now keep_decreasing=",
}


def _reject_renamed(kwargs: dict[str, Any]) -> None:
    for name in kwargs:
        raise TypeError(_RENAMED.get(name, f"GreedyLR got an unexpected keyword argument {name!r}"))


_UNRESOLVED = object()  # reducer not looked up yet (torch.distributed may initialise late)


class GreedyLR(LRScheduler):
    """Loss-feedback learning-rate scheduler (arXiv 2512.14527), drop-in for torch loops.

    Raises each group's LR (divides by ``factor``) while the smoothed metric keeps beating its best
    value, lowers it (multiplies by ``factor``) when it stops, within ``[min_lr, max_lr]``.

    **Pass ``total_steps``** (the number of optimizer steps in the run) for the budget-aware
    schedule: the LR is GreedyLR's decision times an envelope with an optional linear LR warmup
    (``warmup_steps``) and a final 1-sqrt anneal to ~0 over the last ``anneal_fraction`` of the
    steps; the defaults then let GreedyLR lower the LR 10x within half of the stable phase and
    raise it 10x within the whole of it (for a base LR 10x off). Without ``total_steps`` it is
    the purely reactive rule of the paper (no anneal, LR within 0.1x-1x of the initial LR).
    :mod:`learnlr.control.schedule` documents both default sets and the phase rules;
    docs/greedylr.md has the evidence.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: optimizer steps in the run (None: reactive, no envelope). Stepping past it
            holds the final LR: no more decisions. In budget mode GreedyLR owns the LR: a value set in the optimizer
            by someone else lasts only until GreedyLR next moves it (a decision, or any step of
            the warmup or the anneal).
        warmup_steps: linear LR warmup from ``lr / warmup_steps`` to the initial LR over this
            many steps (needs ``total_steps``; at most ``total_steps`` minus the anneal's
            steps); metrics of warmup updates are not acted on.
        anneal_fraction: fraction of ``total_steps`` in the final anneal (0 = none). WSD: 0.2.
        adaptation: with a budget and no explicit ``patience``: the fraction of the stable phase
            in which the LR can move 10x (sets the patience from the budget). Default 0.5.
        mode: ``"min"`` (loss) or ``"max"`` (accuracy-like metric).
        factor: multiplicative step in (0, 1). Default 0.95 (paper); 0.9 with a budget.
        patience: act after more than this many consecutive better / non-better calls. Default
            10 (paper); with a budget, derived from it (see ``adaptation``).
        increase_every: take only every n-th increase decision (climbs need n times the
            evidence of descents). Default 1 (paper); 2 with a budget.
        accelerate: the k-th decrease since the last better call multiplies the LR by
            ``factor ** k`` instead of ``factor`` (a persistent lack of progress moves the LR
            faster). Default False; the budget-aware per-evaluation mode (``EvalGreedyLR``) uses it.
        climb_on_speedup: in a run of better calls, one that votes for a climb and whose gain
            over the previous call is at least that call's gain is an increase at once (the LR
            is not yet the limit while the curve does not slow down). Default False;
            ``EvalGreedyLR`` with a budget uses it.
        spike_ceiling: a call at least twice as bad as the best (a loss at twice its best, or
            non-finite) caps every later increase below the LRs it was measured at. Default
            False; ``EvalGreedyLR`` with a budget uses it.
        threshold: minimum improvement over the best value that counts (>= 0).
        threshold_mode: ``"rel"`` (fraction of ``abs(best)``) or ``"abs"`` (metric units).
        keep_decreasing: after a decrease, keep decreasing for this many more calls (the
            article's "cooldown" stage).
        keep_increasing: after an increase, keep increasing for this many more calls (the
            article's "warmup" stage; *not* an LR warmup, which is ``warmup_steps``).
        min_lr: float, per-group list, or None = 0.1 x each group's initial LR.
        max_lr: float, per-group list, or None = each group's initial LR (1x) without a budget,
            10x with one.
        window: rolling mean over the last ``window`` finite metrics (1 = off). Default 50 (paper,
            per-step training loss); with a budget at most a tenth of the stable phase. When
            stepping once per evaluation use ``learnlr.control.greedy.PER_EVAL``.
        reset_after: after this many decreases attempted at ``min_lr``, restore the initial LRs and
            clear the state (None = never).
        reduce: how to combine the metric across ranks when ``torch.distributed`` is initialised
            with more than one process: ``"mean"`` (default), ``"sum"``, ``"min"``, ``"max"``, or
            None to use each rank's local metric (ranks' LRs may then diverge). Looked up once, at
            the first ``step(metric)``; not distributed means no extra work per call. Every rank
            must call ``step`` the same number of times (it is a collective).
        sync_every: decide once per ``sync_every`` calls instead of on every call. Metrics
            (tensors stay on their device, detached) are buffered and turned into Python numbers
            with one host synchronisation (and one collective when distributed) per flush; the
            decisions are the same as per-call stepping on the same sequence, but take effect up to
            ``sync_every - 1`` calls late. 1 (default) decides on every call.
        process_group: the ``torch.distributed`` group to reduce over (None = the default group).

    Call ``step(metric)`` once per optimizer step with the training loss (how the paper ran it), or
    once per evaluation with the validation metric. ``metric`` may be a Python number or a 0-d
    tensor. Non-finite metrics never raise; they count as non-improving calls.

    Example::

        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = GreedyLR(opt, total_steps=len(loader) * epochs)
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            sched.step(loss)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        total_steps: int | None = None,
        warmup_steps: int = 0,
        anneal_fraction: float = DEFAULT_ANNEAL_FRACTION,
        adaptation: float | None = None,
        mode: str = "min",
        factor: float | None = None,
        patience: int | None = None,
        increase_every: int | None = None,
        accelerate: bool = False,
        climb_on_speedup: bool = False,
        spike_ceiling: bool = False,
        threshold: float = 0.0,
        threshold_mode: str = "rel",
        keep_decreasing: int = 0,
        keep_increasing: int = 0,
        min_lr: float | Sequence[float] | None = None,
        max_lr: float | Sequence[float] | None = None,
        window: int | None = None,
        reset_after: int | None = None,
        reduce: str | None = "mean",
        sync_every: int = 1,
        process_group: Any = None,
        **renamed: Any,
    ) -> None:
        _reject_renamed(renamed)
        check_reduce(reduce)
        if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
            raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
        self.reduce = reduce
        self.sync_every = sync_every
        self.process_group = process_group
        self._reducer: Any = _UNRESOLVED
        # True while step() must leave the fast path: before the reducer is resolved, and for
        # good when reducing or deferring. The plain per-call path pays one attribute test.
        self._special = True
        self._pending: list[Any] = []
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        resolved = resolve(
            total_steps=total_steps, warmup_steps=warmup_steps, anneal_fraction=anneal_fraction,
            factor=factor, patience=patience, increase_every=increase_every, window=window,
            adaptation=adaptation, mode=mode, accelerate=accelerate,
            climb_on_speedup=climb_on_speedup, spike_ceiling=spike_ceiling,
            threshold=threshold, threshold_mode=threshold_mode, keep_decreasing=keep_decreasing,
            keep_increasing=keep_increasing, reset_after=reset_after,
        )
        self.budget: Budget | None = None
        self._budget_fast = False  # set at the first step once the reducer is known
        if resolved.budget is not None:
            self._use_budget(resolved.budget)
        # "initial_lr" is set by a scheduler built before this one (a LinearLR warmup): its
        # target LR, not the warmup's first value, is the LR GreedyLR's bounds are relative to.
        initial = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        self.controller = GreedyController(
            resolved.config, initial, min_lr, max_lr,
            min_lr_ratio=resolved.min_lr_ratio, max_lr_ratio=resolved.max_lr_ratio,
        )
        super().__init__(optimizer)
        if self.budget is not None:
            self._write_lrs()

    @property
    def _schedulers(self) -> Any:
        # SequentialLR's constructor probes hasattr(scheduler, "_schedulers") on every child
        # (recursive_undo); hasattr lets this ValueError through, so nesting GreedyLR fails at
        # construction with advice instead of with a TypeError at the milestone, mid-training.
        # (Generic attribute walkers such as inspect.getmembers see the ValueError too.)
        raise ValueError(
            "GreedyLR cannot run inside SequentialLR: its step() needs the metric, which "
            "SequentialLR cannot pass. For 'warmup, then GreedyLR' use GreedyLR(opt, "
            "total_steps=N, warmup_steps=W) alone (the warmup is part of its schedule)"
        )

    # Read-only views for people used to ReduceLROnPlateau's attributes.
    @property
    def best(self) -> float | None:
        return self.controller.best

    @property
    def min_lrs(self) -> list[float]:
        return list(self.controller.min_lrs)

    @property
    def max_lrs(self) -> list[float]:
        return list(self.controller.max_lrs)

    def get_lr(self) -> list[float]:
        # Only reached from LRScheduler machinery; GreedyLR computes LRs in step().
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, metric: SupportsFloat | None = None) -> None:  # type: ignore[override]
        """Record one metric and adjust the learning rates if a decision is due."""
        if metric is None:
            if self._in_initial_step():
                self.last_epoch = 0
                self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]
                return
            raise TypeError(
                "GreedyLR.step() needs the metric: call sched.step(loss) once per optimizer step "
                "(training loss) or sched.step(val_metric) once per evaluation. ChainedScheduler "
                "and SequentialLR cannot pass one: for a warmup use GreedyLR(opt, "
                "total_steps=N, warmup_steps=W) instead. PyTorch Lightning steps a bare "
                "scheduler without the metric: return {'optimizer': opt, 'lr_scheduler': "
                "lr_scheduler_config(self, opt)} (learnlr.integrations.lightning). HF Trainer: "
                "trainer = use_greedy_lr(trainer) (learnlr.integrations.transformers)"
            )
        self.last_epoch += 1
        self._step_count += 1
        if self._special:
            self._step_special(metric)
            return
        if type(metric) is not float:
            # .item() rather than float(): no "requires_grad" warning when passed `loss` itself.
            # A plain tensor is the common case: handled inline, without a function call.
            try:  # (free in Python 3.11 when nothing is raised)
                metric = metric.item() if type(metric) is _Tensor else _to_float(metric)
            except RuntimeError:  # a tensor of several elements: .item() cannot choose one
                raise ValueError(f"metric must be a number or a one-element tensor, got shape "
                                 f"{tuple(metric.shape)}") from None
        if self._budget_fast:
            t = self.last_epoch
            if self._warmup_steps < t < self._stable_end:  # stable phase: envelope 1, no gate
                decision = self.controller.observe(metric)
                if decision != HOLD:
                    self.controller.apply(decision)
                    self._write_lrs()
                return
            self._step_budget(metric)
            return
        decision = self.controller.observe(metric)
        if decision != HOLD:
            self._apply(decision)

    def _step_budget(self, value: float) -> None:
        """Budget mode, one decision per call, outside the stable phase (which step() handles
        inline): the warmup, its last step and the anneal, where the envelope moves the LR on
        every call. The same rules as _decide + _write_lrs (a test checks they agree)."""
        t = self.last_epoch  # the next update's step; ``value`` is the loss of update t - 1
        controller = self.controller
        if t > self._warmup_steps:  # here: the anneal or past the budget, never the stable phase
            if t <= self._last_step + 1:  # control.schedule.observes: past it, the LR holds
                decision = controller.observe(value)
                # control.schedule.gate: no increase for an update inside the anneal.
                if decision != HOLD and (decision != INCREASE or t < self._anneal_start):
                    controller.apply(decision)
            scale = (self._envelope_anneal[min(t, self._last_step) - self._anneal_start]
                     if t >= self._anneal_start else 1.0)
        elif t < self._warmup_steps:
            scale = self._envelope_warmup[t]
        else:
            scale = 1.0  # t == warmup_steps: the first update at the full LR
        # One pass: scale, write (plain float LRs, the common case) and collect for _last_lr.
        lrs = []
        for group, lr in zip(self.optimizer.param_groups, controller.lrs):
            lr *= scale
            if type(group["lr"]) is not float:
                self._set_group_lrs([x * scale for x in controller.lrs])
                return
            group["lr"] = lr
            lrs.append(lr)
        self._last_lr = lrs

    def _in_initial_step(self) -> bool:
        # LRScheduler.__init__ calls step() once with no metric. Older torch has no _is_initial
        # flag; there last_epoch is still -1 during that call.
        return getattr(self, "_is_initial", False) or self.last_epoch == -1

    def _step_special(self, metric: SupportsFloat) -> None:
        if self._reducer is _UNRESOLVED:
            self._reducer = resolve_reducer(self.reduce, self.process_group)
            deferred = self.sync_every > 1 or self._reducer is not None
            self._special = deferred
            self._budget_fast = not deferred and self.budget is not None
            if not deferred:
                # Metrics buffered by a resumed sync_every > 1 run are decided first, in order.
                pending, self._pending = self._pending, []
                self._decide([float(m) for m in pending] + [_to_float(metric)])
                if self.budget is not None:
                    self._write_lrs()
                return
        if isinstance(metric, torch.Tensor) and metric.numel() != 1:
            raise ValueError(
                f"metric must be a number or a one-element tensor, got shape {tuple(metric.shape)}"
            )
        # Detach so a buffered loss does not keep its autograd graph alive.
        self._pending.append(metric.detach() if isinstance(metric, torch.Tensor) else metric)
        if len(self._pending) >= self.sync_every:
            self.flush()
        if self.budget is not None:
            self._write_lrs()

    @property
    def pending(self) -> int:
        """Number of metrics buffered and not yet decided on (always < ``sync_every``)."""
        return len(self._pending)

    def flush(self) -> None:
        """Decide on every buffered metric now: one host sync, and one collective if distributed.

        Called automatically every ``sync_every`` calls. When distributed, every rank must flush
        at the same call (true whenever all ranks step equally often).
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        reducer = self._reducer if isinstance(self._reducer, MetricReducer) else None
        if any(isinstance(m, torch.Tensor) for m in pending):
            try:
                # Common case, all 0-d (or all shape-(1,)) tensors: two ops for the whole buffer.
                values = torch.stack(pending).reshape(len(pending))
                # float64 keeps float64 losses exact; MPS has no float64, copy to the CPU first.
                values = (values.cpu() if values.device.type == "mps" else values).double()
            except (TypeError, RuntimeError):  # mixed floats / shapes / devices / dtypes
                device = next(m.device for m in pending if isinstance(m, torch.Tensor))
                values = torch.stack([
                    torch.as_tensor(m, dtype=torch.float64, device=device).reshape(())
                    for m in pending
                ])
            if reducer is not None:
                values = reducer.reduce(values)
            floats = values.tolist()  # the one device-to-host copy of this flush
        else:
            floats = [float(m) for m in pending]
            if reducer is not None:
                floats = reducer.reduce_floats(floats)
        self._decide(floats)

    def _decide(self, values: list[float]) -> None:
        observe = self.controller.observe
        budget = self.budget
        if budget is None:
            for value in values:
                decision = observe(value)
                if decision != HOLD:
                    self._apply(decision)
            return
        # values[i] is the loss of the update made at optimizer step first + i.
        first = self.last_epoch - len(self._pending) - len(values)
        for i, value in enumerate(values):
            step = first + i
            if observes(budget, step):
                decision = gate(observe(value), budget, step + 1)
                if decision != HOLD:
                    self.controller.apply(decision)

    def _apply(self, decision: int) -> None:
        """Scale the LRs in the optimizer now (respecting changes made by others) and write back."""
        groups = self.optimizer.param_groups
        controller = self.controller
        controller.apply(decision, [float(g["lr"]) for g in groups])
        self._set_group_lrs(list(controller.lrs))

    def _set_group_lrs(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            if type(group["lr"]) is float:
                group["lr"] = lr
            elif isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = lrs

    def _write_lrs(self) -> None:
        """Budget mode: the LR for the next update is GreedyLR's LR times the envelope there.

        The controller keeps the stable-phase LRs itself, so an LR changed in the optimizer by
        someone else is overwritten when GreedyLR next moves it (unlike the reactive mode).
        """
        t = self.last_epoch
        if t < self._warmup_steps:
            scale = self._envelope_warmup[t]
        elif t >= self._anneal_start:
            scale = self._envelope_anneal[min(t, self._last_step) - self._anneal_start]
        else:
            scale = 1.0
        self._set_group_lrs([lr * scale for lr in self.controller.lrs])

    def _use_budget(self, b: Budget) -> None:
        self.budget = b
        self._warmup_steps = b.warmup_steps
        self._anneal_start = b.anneal_start if b.anneal_steps else math.inf
        self._last_step = b.total_steps - 1
        # Calls with warmup_steps < t < _stable_end take step()'s inline path: stable-phase
        # updates whose loss is still within the budget (past it nothing is decided).
        self._stable_end = min(self._anneal_start, b.total_steps + 1)
        # The envelope where it is not 1, computed once by the one definition
        # (control.budget.envelope): step() then only indexes a list.
        self._envelope_warmup = [b.multiplier(t) for t in range(b.warmup_steps)]
        self._envelope_anneal = [b.multiplier(t) for t in range(b.anneal_start, b.total_steps)]

    @property
    def stable_lrs(self) -> list[float]:
        """GreedyLR's own LRs, before the budget envelope (= the LRs without a budget)."""
        return list(self.controller.lrs)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only (JSON-serialisable).

        Metrics still buffered by ``sync_every`` are saved as local (unreduced) numbers; under
        DDP, checkpoint at a multiple of ``sync_every`` calls for an exact resume on every rank.
        """
        return {
            "version": _STATE_VERSION,
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
            "base_lrs": [float(lr) for lr in self.base_lrs],
            "last_lr": [float(lr) for lr in self._last_lr],
            "controller": self.controller.state_dict(),
            "pending": [_state_float(float(m)) for m in self._pending],
            "budget": None if self.budget is None else dataclasses.asdict(self.budget),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. A refused state (ValueError: another version, budget mode,
        group count, a missing or malformed entry) leaves the scheduler as it was."""
        budget, backup = self.budget, self.state_dict()
        try:
            self._load_state(state_dict)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if budget is not None:
                self._use_budget(budget)  # the one piece of the backup load does not restore
            self._load_state(backup)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"not a {type(self).__name__} state: {exc!r}") from None

    def _load_state(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version")
        if version not in (1, _STATE_VERSION):
            raise ValueError(
                f"GreedyLR state version {version!r} is not supported (expected 1 or "
                f"{_STATE_VERSION})"
            )
        steps_taken = int(state_dict["last_epoch"])
        saved = state_dict.get("budget")
        if (saved is None) != (self.budget is None):
            raise ValueError(
                "this state was saved by a GreedyLR "
                f"{'without' if saved is None else 'with'} total_steps and cannot resume one "
                f"{'with' if saved is None else 'without'}: build the scheduler as it was saved"
            )
        if self.budget is not None and self.budget.total_steps != saved["total_steps"]:
            # The budget comes from the constructor: a resumed run may extend it, not cut it
            # below the steps already taken (the same budget may have been stepped past).
            check_total_steps(self.budget.total_steps, steps_taken=steps_taken)
        saved_warmup = 0 if saved is None else int(saved.get("warmup_steps", 0))
        if self.budget is not None and steps_taken and saved_warmup != self.budget.warmup_steps:
            # A started run keeps the warmup it started with (a longer resumed budget, or a
            # default that changed since the checkpoint, must not restart or insert a warmup).
            b = self.budget
            warmup = min(saved_warmup, b.total_steps)
            self._use_budget(Budget(b.total_steps, warmup,
                                    min(b.anneal_steps, b.total_steps - warmup), b.shape))
        self.controller.load_state_dict(state_dict["controller"])
        self.last_epoch = steps_taken
        self._step_count = int(state_dict["step_count"])
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self._last_lr = [float(lr) for lr in state_dict["last_lr"]]
        self._pending = [float(m) for m in state_dict.get("pending", [])]
        if self._pending:  # back to the general path, which decides buffered metrics first
            self._special, self._budget_fast, self._reducer = True, False, _UNRESOLVED
        if self.budget is not None:
            self._write_lrs()
