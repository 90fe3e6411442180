"""GreedyLR for the Hugging Face ``Trainer`` (extra ``learnlr[hf]``).

One line after building the Trainer::

    trainer = use_greedy_lr(Trainer(model, args, train_dataset=ds))   # per step, training loss
    trainer.train()

:func:`use_greedy_lr` keeps everything Trainer builds itself: its optimizer (``optim=``,
``learning_rate``, the weight-decay / no-decay parameter groups) and its step count. It replaces
only Trainer's scheduler, through ``Trainer.create_scheduler(num_training_steps, optimizer)``
(transformers has no scheduler registry, so ``lr_scheduler_type`` cannot name ours): the scheduler
is a budget-aware :class:`learnlr.GreedyLR` with ``total_steps`` = the Trainer's number of training
steps (``max_steps``, or the one computed from the epochs) and ``warmup_steps`` =
``args.get_warmup_steps(...)`` (``TrainingArguments(warmup_steps=N)``, or a float < 1 as a ratio).
``use_greedy_lr(trainer, total_steps=None)`` keeps the purely reactive rule (no envelope).

Why the scheduler sits in Trainer's own scheduler slot:

* Trainer then has no scheduler of its own that could fight ours.
* Trainer steps that slot exactly once per *optimizer* step, after the gradient accumulation
  micro-batches and never after a skipped (fp16-overflow) step, so accumulation is handled where
  Trainer handles it.
* Trainer logs ``learning_rate`` from the slot's ``get_last_lr()`` and saves / restores the slot's
  ``state_dict()`` in ``scheduler.pt`` (loaded with ``weights_only=True``; ours is plain JSON-able
  data), so ``resume_from_checkpoint`` continues the exact trajectory.

Trainer steps the slot with no argument; the training loss is the one Trainer logs for the step:
the sum of what ``Trainer.training_step`` returns for the step's micro-batches (detached, left on
its device). Those returns are normalised for gradient accumulation the way Trainer normalises
them: with ``num_items_in_batch`` (models that take loss kwargs, GPT-2 and most HF LMs) each is
the micro-batch's share of the step's loss; otherwise a micro-batch mean divided by the number
of micro-batches. A custom ``compute_loss`` is covered too; ``capture_model_loss=False`` leaves
the recording to ``self.lr_scheduler.record_loss(loss)`` (GreedyLR takes the mean of the
micro-batch losses recorded for a step).

``on="eval"`` decides once per evaluation on ``metric_for_best_model`` instead (what
``transformers.GreedyLR`` does), with ``mode`` from ``greater_is_better`` and the per-evaluation
defaults (:func:`learnlr.control.schedule.per_eval_defaults`: ``BUDGET_PER_EVAL`` with a budget,
``PER_EVAL`` without); the warmup / anneal envelope still follows the optimizer steps. With a
budget and no Trainer warmup, it warms the LR up over the first 5 % of the steps
(:func:`learnlr.control.schedule.eval_warmup_steps`). With a budget it also keeps the
training-loss brake (:mod:`learnlr.control.brake`; ``brake=None`` turns
it off): the steps' training losses are recorded as above, and one descent is taken at once when
their rolling mean climbs to twice its best between two evaluations. ``eval_strategy="no"`` is
an error (no evaluation, no decision). With several evaluation datasets
(``eval_dataset={"a": ..., "b": ...}``, ``metric_for_best_model="eval_a_loss"``) Trainer reports
each dataset apart; GreedyLR decides on the one whose metrics hold the metric (Trainer raises
a KeyError when none does).

``callbacks=[GreedyLRCallback()]`` without :func:`use_greedy_lr` is an error at the start of
``train()`` (Trainer would otherwise run its own linear decay and GreedyLR would never act).

Distributed (DDP/FSDP via Trainer): each rank's scheduler all-reduces the loss (``reduce="mean"``,
see :class:`learnlr.GreedyLR`), so every rank keeps the same LR. If something steps the slot
several times for one optimizer step (Accelerate's ``AcceleratedScheduler`` does so once per
process), only the first call of each optimizer step acts.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import (
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from learnlr.control.schedule import resolve
from learnlr.torch.clocked import ClockedGreedyLR, eval_mode_defaults
from learnlr.torch.greedy import GreedyLR, _reject_renamed

_TRIGGERS = ("train_loss", "eval")
# GreedyLR arguments that resolve() validates without an optimizer (checked at construction).
_RESOLVED_KEYS = ("total_steps", "warmup_steps", "anneal_fraction", "adaptation", "factor", "patience", "window", "threshold",
                  "threshold_mode", "keep_decreasing", "keep_increasing", "reset_after")


class TrainerGreedyLR(ClockedGreedyLR):
    """A :class:`learnlr.GreedyLR` that Trainer can step with no argument.

    ``on="train_loss"``: ``step()`` with no metric decides on the mean of the training losses
    recorded with :meth:`record_loss` since the previous optimizer step (the callback records
    each micro-batch's share of the step's loss times their number: the mean is the step's
    loss). ``on="eval"``: ``step()`` only advances the budget envelope by one optimizer step and
    :meth:`decide` takes the metric of each evaluation. ``step(metric)`` behaves exactly like
    :class:`learnlr.GreedyLR`. Built by :func:`use_greedy_lr`.
    """

    def __init__(self, optimizer: Optimizer, *, on: str = "train_loss", **kwargs: Any):
        self.on = on
        self._loss_sum: torch.Tensor | float | None = None
        self._loss_count = 0
        self._stepped_this_step = False
        super().__init__(optimizer, **kwargs)

    def record_loss(self, loss: torch.Tensor | float) -> None:
        """Add one micro-batch's training loss (no host sync: tensors stay on their device)."""
        # float32, not float64: MPS has no float64, and bf16/fp16 losses sum badly in their own dtype.
        value = loss.detach().reshape(()).float() if isinstance(loss, torch.Tensor) else float(loss)
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += 1

    def begin_optimizer_step(self) -> None:
        """Forget losses of a step whose optimizer update was skipped; re-arm the next step."""
        self._loss_sum = None
        self._loss_count = 0
        self._stepped_this_step = False

    def _take_mean_loss(self) -> torch.Tensor | float | None:
        """The mean of the losses recorded for this optimizer step (None: none), then forget them."""
        mean = None if self._loss_count == 0 else self._loss_sum / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        return mean

    def step(self, metric: Any = None) -> None:  # type: ignore[override]
        if metric is not None or self._in_initial_step():
            GreedyLR.step(self, metric)
            return
        if self._stepped_this_step:
            return  # a repeated step for the same optimizer step (AcceleratedScheduler)
        mean = self._take_mean_loss()
        self._stepped_this_step = True
        if self.on == "eval":
            # Per-evaluation mode: the callback decides on each evaluation; the step's training
            # loss (if recorded) only feeds the brake.
            self.tick(mean)
            return
        if mean is None:
            self._stepped_this_step = False
            raise RuntimeError(
                "GreedyLR was stepped but no training loss was recorded for this optimizer step: "
                "with use_greedy_lr(trainer, capture_model_loss=False), call "
                "self.lr_scheduler.record_loss(loss) for every training micro-batch (from your "
                "compute_loss, if model.training), or leave capture_model_loss=True: GreedyLR then "
                "takes the loss Trainer.training_step returns."
            )
        GreedyLR.step(self, mean)


class GreedyLRCallback(TrainerCallback):
    """Drives learnlr's GreedyLR inside a ``transformers.Trainer``; install it with
    :func:`use_greedy_lr`, which builds the scheduler on Trainer's own optimizer.

    Args:
        on: ``"train_loss"`` (default): one decision per optimizer step on the mean training loss of
            its micro-batches, the paper's mode. ``"eval"``: one decision per evaluation on
            ``args.metric_for_best_model``, with
            :func:`learnlr.control.schedule.per_eval_defaults` as defaults and, with a budget,
            the training-loss brake (``brake=`` its margin, ``None``: off) and a 5 % LR warmup
            when the Trainer sets none.
        mode: ``"min"`` / ``"max"``. Default: ``"min"`` for ``on="train_loss"``; from
            ``args.greater_is_better`` for ``on="eval"`` (a conflicting explicit value is an error).
        capture_model_loss: record the loss ``Trainer.training_step`` returns for each training
            micro-batch (the step's loss is their sum, the value Trainer logs). Set False and
            call ``trainer.lr_scheduler.record_loss(loss)`` yourself to feed other losses (their
            mean per step).
        **greedy_kwargs: any other :class:`learnlr.GreedyLR` argument (factor, patience, window,
            min_lr, max_lr, anneal_fraction, reduce, sync_every, ...). ``total_steps`` defaults to
            the Trainer's number of training steps and ``warmup_steps`` to
            ``args.get_warmup_steps(...)`` (``on="eval"``: 5 % of the steps when that is 0);
            ``total_steps=None`` is the purely reactive rule (no
            warmup, no final anneal).
    """

    def __init__(
        self,
        *,
        on: str = "train_loss",
        mode: str | None = None,
        capture_model_loss: bool = True,
        **greedy_kwargs: Any,
    ) -> None:
        if on not in _TRIGGERS:
            raise ValueError(f"on must be one of {_TRIGGERS}, got {on!r}")
        if on == "train_loss" and mode == "max":
            raise ValueError("mode must be 'min' when on='train_loss' (a loss), got 'max'")
        if on == "train_loss" and greedy_kwargs.get("brake") is not None:
            raise ValueError(
                f"brake={greedy_kwargs['brake']!r} applies to on='eval' only (on='train_loss' "
                "already decides on every training loss)")
        _check_greedy_kwargs(greedy_kwargs)
        self.on = on
        self.explicit_mode = mode
        self.capture_model_loss = capture_model_loss
        self.greedy_kwargs = greedy_kwargs
        self.scheduler: TrainerGreedyLR | None = None
        self.metric_key: str | None = None
        self.mode = mode or "min"
        self._capturing = False
        self._training = False

    def build_scheduler(self, args: TrainingArguments, optimizer: Optimizer,
                        num_training_steps: int) -> TrainerGreedyLR:
        """The scheduler for Trainer's slot (called by ``Trainer.create_scheduler``)."""
        self.bind_args(args)
        budget: dict[str, Any] = {"total_steps": num_training_steps}
        total = self.greedy_kwargs.get("total_steps", num_training_steps)
        if self.on == "eval":
            budget.update(eval_mode_defaults(total))
        if total is not None:
            # The Trainer's own warmup (warmup_steps / warmup_ratio) when it sets one; else the
            # eval mode's default warmup (none in the per-step mode).
            trainer_warmup = args.get_warmup_steps(num_training_steps)
            if trainer_warmup or self.on != "eval":
                budget["warmup_steps"] = trainer_warmup
        self.scheduler = TrainerGreedyLR(optimizer, on=self.on, mode=self.mode,
                                         **{**budget, **self.greedy_kwargs})
        return self.scheduler

    def bind_args(self, args: TrainingArguments) -> None:
        """Eval mode: the metric key and the direction from ``TrainingArguments``."""
        if self.on != "eval":
            return
        metric = args.metric_for_best_model
        if not metric:
            raise ValueError(
                "GreedyLRCallback(on='eval') needs TrainingArguments(metric_for_best_model=...), "
                "got metric_for_best_model=None"
            )
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
        if strategy == "no":
            raise ValueError(
                "GreedyLRCallback(on='eval') decides once per evaluation, but "
                "TrainingArguments(eval_strategy='no') never evaluates during train(), so "
                "GreedyLR would never act: set eval_strategy='steps' (with eval_steps) or "
                "'epoch', or use on='train_loss' (one decision per optimizer step)"
            )
        self.metric_key = metric if metric.startswith("eval_") else f"eval_{metric}"
        wanted = "max" if args.greater_is_better else "min"
        if self.explicit_mode is not None and self.explicit_mode != wanted:
            raise ValueError(
                f"mode={self.explicit_mode!r} contradicts greater_is_better="
                f"{args.greater_is_better!r} for metric_for_best_model={metric!r}"
            )
        self.mode = wanted

    # ------------------------------------------------------------------ Trainer events
    def on_init_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> None:
        self.bind_args(args)  # fail at Trainer(...) rather than at train()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, lr_scheduler: Any = None,
                       **kwargs: Any) -> None:
        # Ours never built (Trainer made its own), or another torch scheduler in the slot. A
        # non-torch object there is a wrapper around ours (DeepSpeed's), not a rival.
        rival = isinstance(lr_scheduler, LRScheduler) and lr_scheduler is not self.scheduler
        if self.scheduler is None or rival:
            raise ValueError(_not_installed_message(args, lr_scheduler))
        self._training = True
        # Eval mode records the training losses too, for the brake (if it has one).
        wants_loss = self.on == "train_loss" or self.scheduler.brake is not None
        self._capturing = wants_loss and self.capture_model_loss

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, **kwargs: Any) -> None:
        self.scheduler.begin_optimizer_step()

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.on != "eval" or not self._training:
            return  # trainer.evaluate() outside of train() must not move the LR
        metrics = metrics or {}
        if self.metric_key in metrics:
            self.scheduler.decide(metrics[self.metric_key])
        elif _evaluation_prefix(metrics) in (None, "eval"):  # the whole evaluation lacks it
            raise ValueError(
                f"metric_for_best_model={self.metric_key!r} is not among the evaluation metrics "
                f"{sorted(metrics)}; return it from compute_metrics or change metric_for_best_model"
            )
        # Otherwise one of several eval datasets (eval_<name>_...), each reported apart: not the
        # metric's. (If none holds it, Trainer's own check raises a KeyError naming it.)

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        self._training = self._capturing = False

    # ------------------------------------------------------------------ internals
    def record_training_step(self, loss: torch.Tensor, micro_batches: int) -> None:
        """One micro-batch's ``training_step`` return: its share of the step's loss, as Trainer
        sums and logs it (called by the Trainer :func:`use_greedy_lr` sets up)."""
        if self._capturing:
            # The scheduler averages a step's records; k records of k x share average to the
            # sum of the shares. (The micro-batch outputs.loss would be wrong to average: with
            # num_items_in_batch each is already divided by the whole step's token count.)
            self.scheduler.record_loss(loss * micro_batches)


def _evaluation_prefix(metrics: dict[str, float]) -> str | None:
    """The ``metric_key_prefix`` of one ``Trainer.evaluate`` call ("eval"; "eval_<name>" for one
    of several eval datasets), read from its ``<prefix>_runtime`` speed metric."""
    for name in metrics:
        if name.endswith("_runtime"):
            return name[: -len("_runtime")]
    return None


def _check_greedy_kwargs(greedy_kwargs: dict[str, Any]) -> None:
    """Fail at construction, not at train(): unknown names and every value that can be checked
    without the optimizer (a large example budget stands in for the Trainer's)."""
    accepted = inspect.signature(GreedyLR.__init__).parameters
    for name in greedy_kwargs:
        if name == "brake":
            continue  # ClockedGreedyLR's, checked by LossBrake when the scheduler is built
        if name not in accepted or name in ("self", "optimizer", "renamed"):
            _reject_renamed({name: greedy_kwargs[name]})  # a TypeError naming it (and warmup=)
    subset = {k: v for k, v in greedy_kwargs.items() if k in _RESOLVED_KEYS}
    resolve(**{"total_steps": 10**9, **subset})


def _not_installed_message(args: TrainingArguments, lr_scheduler: Any) -> str:
    running = type(lr_scheduler).__name__
    if running == "LambdaLR":
        kind = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        running += f" (lr_scheduler_type={kind!r})"
    return (
        f"GreedyLRCallback is in Trainer's callbacks but Trainer's scheduler is {running}, which "
        "would run instead of GreedyLR. Install GreedyLR with "
        "`trainer = learnlr.integrations.transformers.use_greedy_lr(trainer)` before "
        "trainer.train() (it keeps Trainer's optimizer and takes max_steps and warmup_steps from "
        "TrainingArguments), and do not pass a scheduler in optimizers=(opt, scheduler)."
    )


class _GreedyLRScheduling:
    """Mixed in before the Trainer's class by :func:`use_greedy_lr`."""

    def create_scheduler(self, num_training_steps: int, optimizer: Optimizer | None = None):
        if self.lr_scheduler is None:
            callback = _find_callback(self)
            self.lr_scheduler = callback.build_scheduler(
                self.args, optimizer if optimizer is not None else self.optimizer,
                num_training_steps,
            )
            # Trainer rebuilds a scheduler it created at the next train() (resume, a new budget).
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def training_step(self, model: torch.nn.Module, inputs: Any, *args: Any, **kwargs: Any):
        # What Trainer sums into the loss it logs: GreedyLR decides on that same per-step loss.
        loss = super().training_step(model, inputs, *args, **kwargs)
        micro_batches = getattr(self, "current_gradient_accumulation_steps",
                                self.args.gradient_accumulation_steps)
        _find_callback(self).record_training_step(loss, micro_batches)
        return loss


_SUBCLASSES: dict[type, type] = {}


def _warn_replaced_scheduler(args: TrainingArguments) -> None:
    kind = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if kind != "linear":  # Trainer's default: nothing the user chose
        warnings.warn(
            f"use_greedy_lr replaces TrainingArguments(lr_scheduler_type={kind!r}) (and its "
            "lr_scheduler_kwargs) with GreedyLR; pass GreedyLR's arguments to use_greedy_lr",
            UserWarning, stacklevel=3,
        )


def _find_callback(trainer: Trainer) -> GreedyLRCallback:
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GreedyLRCallback)]
    if len(found) != 1:
        raise ValueError(f"the Trainer must hold exactly one GreedyLRCallback, found {len(found)}")
    return found[0]


def use_greedy_lr(trainer: Trainer, **callback_kwargs: Any) -> Trainer:
    """Make ``trainer`` schedule its own optimizer with GreedyLR; returns the same Trainer.

    Args:
        trainer: any ``transformers.Trainer`` (subclasses such as TRL's included).
        **callback_kwargs: :class:`GreedyLRCallback` arguments (``on="eval"``, ``factor=``, ...).
            Leave them out if ``callbacks=[GreedyLRCallback(...)]`` was already passed to Trainer.

    ``total_steps`` is the Trainer's number of training steps and ``warmup_steps`` comes from
    ``TrainingArguments`` (``on="eval"``: 5 % of the steps when it sets none); the optimizer is
    the one Trainer builds (``optim=``, weight decay groups) or the one passed in
    ``optimizers=(opt, None)``. After ``train()`` starts the scheduler
    is ``trainer.lr_scheduler``.

    Example::

        trainer = use_greedy_lr(Trainer(model, args, train_dataset=ds))
        trainer.train()
    """
    if not isinstance(trainer, Trainer):
        raise ValueError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GreedyLRCallback)]
    if found and callback_kwargs:
        raise ValueError(
            f"the Trainer already holds a GreedyLRCallback; pass its arguments there, not to "
            f"use_greedy_lr (got {sorted(callback_kwargs)})"
        )
    # A scheduler Trainer created itself (a train() that stopped at our error) is rebuilt anyway.
    passed_in = not getattr(trainer, "_created_lr_scheduler", False)
    if trainer.lr_scheduler is not None and passed_in and not isinstance(
        trainer.lr_scheduler, TrainerGreedyLR
    ):
        raise ValueError(
            f"optimizers=(optimizer, {type(trainer.lr_scheduler).__name__}) already sets a "
            "scheduler; pass optimizers=(optimizer, None) so GreedyLR can take the slot"
        )
    callback = found[0] if found else GreedyLRCallback(**callback_kwargs)
    callback.bind_args(trainer.args)
    if not found:
        trainer.add_callback(callback)
    cls = type(trainer)
    if not issubclass(cls, _GreedyLRScheduling):
        _warn_replaced_scheduler(trainer.args)  # once: a second call finds GreedyLR installed
        # A subclass, not a patched method: copy.copy(trainer) (DeepSpeed) keeps the override.
        if cls not in _SUBCLASSES:
            _SUBCLASSES[cls] = type(f"GreedyLR{cls.__name__}", (_GreedyLRScheduling, cls), {})
        trainer.__class__ = _SUBCLASSES[cls]
    return trainer
