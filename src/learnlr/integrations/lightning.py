"""GreedyLR in PyTorch Lightning (extra ``learnlr[lightning]``).

One call in ``configure_optimizers``::

    def training_step(self, batch, batch_idx):
        loss = ...
        self.log("train_loss", loss)          # the per-step mode monitors this
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        return {"optimizer": opt, "lr_scheduler": lr_scheduler_config(self, opt)}

:func:`lr_scheduler_config` builds a budget-aware :class:`learnlr.GreedyLR` with ``total_steps`` =
``trainer.estimated_stepping_batches`` (the run's optimizer steps; pass ``total_steps=`` to
override, ``total_steps=None`` for the purely reactive rule) and hands Lightning a plain
per-step scheduler entry.

How it is driven. Lightning passes a metric only to schedulers flagged ``reduce_on_plateau``, and
its check for a missing metric speaks of "ReduceLROnPlateau" and runs before any code of ours.
So Lightning steps the scheduler once per *optimizer* step without a metric (the warmup / anneal
envelope's clock; Lightning skips the accumulation micro-batches), and a small callback that the
helper adds to the Trainer makes the decisions, reading ``trainer.callback_metrics[monitor]``:

* ``interval="step"`` (default): after each optimizer step (``on_train_batch_end``), on the value
  logged by that step's last micro-batch: the paper's per-step mode.
* ``interval="epoch"``: at the end of each training epoch that ran a validation
  (``on_train_epoch_end``, after that validation; every epoch when there is no validation;
  ``check_val_every_n_epoch=k``: every k-th epoch, never on a validation already decided on),
  e.g. ``monitor="val_loss"`` with the per-evaluation defaults (:func:`learnlr.control.schedule.per_eval_defaults`; with a budget, a linear LR warmup over
  the first 5 % of the steps, :func:`learnlr.control.schedule.eval_warmup_steps`). With a
  budget the training loss
  returned by ``training_step`` (a tensor, or a dict's ``"loss"``) also feeds the brake
  (:mod:`learnlr.control.brake`; ``brake=None`` turns it off): one descent at once when it
  turns unstable between two validations.

A monitored metric that was never logged stops ``fit`` with a ValueError that names it, says
GreedyLR, and lists the logged metrics (``strict=True``); ``strict=False`` skips the decision with
a warning. The scheduler's state (clock, controller) is saved in Lightning checkpoints and restored
by ``Trainer.fit(ckpt_path=...)``. The callback goes first in ``trainer.callbacks``: Lightning runs
``on_train_batch_end`` in list order, and a ``ModelCheckpoint`` saving there must find the step's
decision taken. A checkpoint saved at ``on_validation_end`` (before the epoch's decision) carries
that validation's value, so the resumed run takes the decision.

Returning a bare ``GreedyLR(opt)`` from ``configure_optimizers`` cannot work: Lightning would step
it without the metric. Use this helper.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytorch_lightning as pl
from torch.optim import Optimizer

from learnlr.torch.clocked import ClockedGreedyLR, eval_mode_defaults
from learnlr.torch.greedy import _state_float

_INTERVALS = ("step", "epoch")


class LightningGreedyLR(ClockedGreedyLR):
    """The scheduler :func:`lr_scheduler_config` gives Lightning: ``step()`` is the clock (one
    optimizer step), :meth:`decide` one decision; what it monitors is kept beside it."""

    def __init__(self, optimizer: Optimizer, *, monitor: str, interval: str, frequency: int,
                 strict: bool, **kwargs: Any) -> None:
        self.monitor, self.interval = monitor, interval
        self.frequency, self.strict = frequency, strict
        # interval="epoch": whether a validation ran since the last decision, and the monitored
        # value it left. In the state: a checkpoint saved at on_validation_end precedes the
        # epoch's decision, which a resumed run replays without that validation's metrics.
        self.validated = False
        self.validated_value: float | None = None
        super().__init__(optimizer, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        value = self.validated_value
        state["validated"] = self.validated
        state["validated_value"] = None if value is None else _state_float(value)
        return state

    def _load_state(self, state_dict: dict[str, Any]) -> None:
        super()._load_state(state_dict)
        value = state_dict.get("validated_value")  # (states written before it: none)
        self.validated = bool(state_dict.get("validated", False))
        self.validated_value = None if value is None else float(value)


class GreedyLRDriver(pl.Callback):
    """Feeds :class:`LightningGreedyLR` its monitored metric (added by :func:`lr_scheduler_config`)."""

    def __init__(self, scheduler: LightningGreedyLR) -> None:
        self.scheduler = scheduler
        self._ticks_seen = scheduler.last_epoch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._ticks_seen = self.scheduler.last_epoch  # restored from a checkpoint by now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        sched = self.scheduler
        if sched.last_epoch == self._ticks_seen:
            return  # an accumulation micro-batch: no optimizer step, no clock tick
        self._ticks_seen = sched.last_epoch
        if sched.interval == "epoch":
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                sched.check_train_loss(loss)  # the brake, if it has one
        elif sched.last_epoch % sched.frequency == 0:
            self._decide(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sched = self.scheduler
        # The sanity check runs before any training: nothing to judge.
        if sched.interval == "epoch" and not trainer.sanity_checking:
            value = trainer.callback_metrics.get(sched.monitor)
            sched.validated = True
            sched.validated_value = None if value is None else float(value)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sched = self.scheduler
        if sched.interval != "epoch" or (trainer.current_epoch + 1) % sched.frequency:
            return
        if trainer.enable_validation and not sched.validated:
            # No validation this epoch (check_val_every_n_epoch > 1): the metrics are those of
            # an evaluation already decided on, and a repeated value would count as no new best.
            return
        fallback = sched.validated_value  # the replayed epoch end of a resumed run has no metrics
        sched.validated, sched.validated_value = False, None
        self._decide(trainer, fallback)

    def _decide(self, trainer: pl.Trainer, fallback: float | None = None) -> None:
        sched = self.scheduler
        value = trainer.callback_metrics.get(sched.monitor, fallback)
        if value is None:
            message = _missing_metric_message(sched, trainer)
            if sched.strict:
                raise ValueError(message)
            warnings.warn(message + "; strict=False: no decision this time", RuntimeWarning,
                          stacklevel=2)
            return
        sched.decide(value)


def _missing_metric_message(sched: LightningGreedyLR, trainer: pl.Trainer) -> str:
    validates = sched.interval == "epoch" and trainer.enable_validation
    where = " after this epoch's validation run" if validates else ""
    message = (
        f"GreedyLR monitors {sched.monitor!r} (lr_scheduler_config(monitor=...)), which is "
        f"not available{where}: the logged metrics are {sorted(trainer.callback_metrics)}. Log "
        f"it with self.log({sched.monitor!r}, value) or monitor one of those"
    )
    if sched.interval == "step":
        return message + " (a validation metric needs interval='epoch')"
    if validates:
        return message + (" (interval='epoch' decides only at the end of an epoch that ran "
                          "validation, every check_val_every_n_epoch epochs)")
    return message + (" (there is no validation: a validation metric needs validation_step and "
                      "val_dataloaders)")


def _total_steps(trainer: pl.Trainer) -> int:
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        raise ValueError(
            "total_steps cannot come from trainer.estimated_stepping_batches, which is "
            f"{steps} (an iterable dataset without a length and max_steps=-1); pass "
            "Trainer(max_steps=N), or total_steps=N (or None: no envelope) to lr_scheduler_config"
        )
    return int(steps)


def _check_options(optimizer: Any, monitor: Any, interval: Any, frequency: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise ValueError(
            f"optimizer must be the torch.optim.Optimizer to schedule, got "
            f"{type(optimizer).__name__}"
        )
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be the non-empty name of a logged metric, got {monitor!r}")
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {_INTERVALS}, got {interval!r}")
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")


def lr_scheduler_config(
    module: pl.LightningModule,
    optimizer: Optimizer,
    *,
    monitor: str = "train_loss",
    interval: str = "step",
    frequency: int = 1,
    strict: bool = True,
    name: str | None = None,
    **greedy_kwargs: Any,
) -> dict[str, Any]:
    """The ``lr_scheduler`` entry for ``configure_optimizers``: GreedyLR on ``optimizer``.

    Args:
        module: the LightningModule (``self`` in ``configure_optimizers``); its Trainer gives the
            step budget and receives the callback that feeds GreedyLR its metric.
        optimizer: the optimizer returned beside this entry.
        monitor: the logged metric to decide on (``self.log(monitor, value)``).
        interval: ``"step"`` (one decision per optimizer step) or ``"epoch"`` (one per training
            epoch that ran a validation, after it, or per epoch without validation; defaults
            :func:`learnlr.control.schedule.per_eval_defaults` and, with a budget, the
            training-loss brake: ``brake=`` its margin, ``None`` off; and a 5 % LR warmup,
            ``warmup_steps=0`` off).
        frequency: decide every ``frequency`` intervals (>= 1).
        strict: a missing ``monitor`` is a ValueError (True) or a skipped decision with a warning.
        name: name shown by Lightning's ``LearningRateMonitor``.
        **greedy_kwargs: :class:`learnlr.GreedyLR` arguments. ``total_steps`` defaults to
            ``trainer.estimated_stepping_batches``; ``total_steps=None`` is the reactive rule.

    The scheduler is ``trainer.lr_scheduler_configs[0].scheduler`` (a :class:`LightningGreedyLR`).
    """
    _check_options(optimizer, monitor, interval, frequency)
    trainer = module.trainer
    if interval == "step" and greedy_kwargs.get("brake") is not None:
        raise ValueError(
            f"brake={greedy_kwargs['brake']!r} applies to interval='epoch' only (interval='step' "
            "already decides on every step's metric)")
    defaults: dict[str, Any] = {}
    if "total_steps" not in greedy_kwargs:
        defaults["total_steps"] = _total_steps(trainer)
    if interval == "epoch":
        defaults.update(eval_mode_defaults(greedy_kwargs.get("total_steps",
                                                             defaults.get("total_steps"))))
    scheduler = LightningGreedyLR(optimizer, monitor=monitor, interval=interval,
                                  frequency=frequency, strict=bool(strict),
                                  **{**defaults, **greedy_kwargs})
    # configure_optimizers runs again on every fit(): one driver, for the newest scheduler.
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, GreedyLRDriver)]
    # First in the list: Lightning runs on_train_batch_end / on_validation_end in list order,
    # and a ModelCheckpoint (put last by Lightning) that saves there must save this step's
    # decision too, or a resumed run is one decision short.
    trainer.callbacks.insert(0, GreedyLRDriver(scheduler))
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "step", "frequency": 1,
                              "reduce_on_plateau": False}
    if name is not None:
        config["name"] = name
    return config
