"""``RLScheduler``: a trained LR policy as a ``torch.optim.lr_scheduler.LRScheduler``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from learnlr.rl.features import ObservationBuilder
from learnlr.rl.policy import PolicyNetwork, load_policy
from learnlr.rl.residual import GreedyResidual

__all__ = ["PRETRAINED", "RLScheduler", "apply_lr_action", "grad_norm_of", "pretrained_path"]

PRETRAINED = ("nmf", "deep")
"""Names of the shipped policies (``learnlr/rl/pretrained/``) that :class:`RLScheduler` runs (the
NMF residual policy also ships there; it needs the NMF solver's base schedule)."""
_STATE_VERSION = 1


def pretrained_path(name: str) -> Path:
    """Path stem (no suffix) of a shipped policy, for :func:`learnlr.rl.load_policy`."""
    if name not in PRETRAINED:
        raise ValueError(f"pretrained policy name must be one of {list(PRETRAINED)}, got {name!r}")
    return Path(str(resources.files("learnlr.rl") / "pretrained" / name))


def grad_norm_of(optimizer: Optimizer) -> float:
    """Global gradient norm over the optimizer's parameters (the policy's gradient feature)."""
    total = 0.0
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                total += float(p.grad.detach().pow(2).sum())
    return math.sqrt(total)


def apply_lr_action(optimizer: Optimizer, action: float, max_log_change: float, floor: float,
                    ceiling: float) -> None:
    """Multiply group 0's LR by ``exp(action * max_log_change)``, clip it to ``[floor, ceiling]``
    and scale every group by the same ratio (tensor LRs are filled in place).

    The one LR update of a policy: :class:`RLScheduler` and the training environments both call
    it, so a policy produces bit-identical LRs in training and in use.
    """
    groups = optimizer.param_groups
    lr = float(groups[0]["lr"])
    new = min(max(lr * math.exp(action * max_log_change), floor), ceiling)
    ratio = new / lr if lr > 0 else 1.0
    for group in groups:
        value = float(group["lr"]) * ratio
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


class RLScheduler(LRScheduler):
    """Drive the learning rate with a trained policy; call ``step(metric)`` like GreedyLR.

    **Residual policies** (``policy.config.kind == "greedy_residual"``, e.g. the shipped
    ``"deep"``): the scheduler is the policy's base (``policy.config.base``:
    ``GreedyLR(optimizer, total_steps=total_steps)`` or ``EvalGreedyLR(...)``) plus a learned
    correction (:mod:`learnlr.rl.residual`). Call ``step(loss)`` after every optimizer step and
    ``decide(val_loss)`` after every evaluation; after each evaluation the policy sets a
    multiplier of the base's LR, at most ``exp(max_log_change)`` either way (only downwards for
    a ``lower_only`` policy). A zero correction is exactly the base.

    **Direct policies** (``"direct"``, e.g. ``"nmf"``):
    Every ``policy.config.steps_per_action`` calls the policy looks at the loss statistics, the
    gradient norm (read from the optimizer's ``.grad`` tensors), the LR relative to the
    reference (the stability bound from ``lr_bound()`` when given, else the initial LR) and the
    fraction of ``total_steps`` used, and multiplies every group's LR by
    ``exp(a * max_log_change)``, ``a`` in ``[-1, 1]``. Group 0's LR is then clipped to
    ``[min_relative_lr, 1] x bound`` (or ``[min_relative_lr, max_lr_factor] x initial LR``
    without a bound) and the other groups keep their ratio to it.

    Args:
        optimizer: the wrapped optimizer.
        policy: a :class:`PolicyNetwork` or the path stem of a saved one.
        total_steps: the run's length in ``step`` calls (the policy sees the fraction used).
            Past it the LR holds: neither kind of policy acts any more.
        lr_bound: optional callable returning the current largest stable LR.
        max_lr_factor: without ``lr_bound``, the LR cap as a multiple of the initial LR.

    Example::

        nmf = StochasticNMF(problem)
        opt = torch.optim.SGD(nmf.parameters(), lr=0.1 * nmf.stability_bound())
        sched = RLScheduler.pretrained("nmf", opt, total_steps=400,
                                       lr_bound=nmf.stability_bound)
        for _ in range(400):
            sched.step(nmf.step(opt).loss)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        policy: PolicyNetwork | str | Path,
        *,
        total_steps: int,
        lr_bound: Callable[[], float] | None = None,
        max_lr_factor: float = 10.0,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        if (isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral)
                or total_steps < 1):
            raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
        total_steps = int(total_steps)
        if not (max_lr_factor >= 1 and math.isfinite(max_lr_factor)):
            raise ValueError(f"max_lr_factor must be a finite value >= 1, got {max_lr_factor}")
        self.policy = policy if isinstance(policy, PolicyNetwork) else load_policy(policy)
        kind = self.policy.config.kind
        if kind not in ("direct", "greedy_residual"):
            raise ValueError(f"RLScheduler runs 'direct' and 'greedy_residual' policies, got "
                             f"kind {kind!r}")
        self.residual: GreedyResidual | None = None
        if kind == "greedy_residual":
            if lr_bound is not None:
                raise ValueError("lr_bound applies to direct policies only; a greedy_residual "
                                 "policy corrects GreedyLR, whose bounds are its own")
            # Built before this scheduler's own LRScheduler init, right after the optimizer:
            # the same GreedyLR as a plain GreedyLR(opt, total_steps=N).
            self.residual = GreedyResidual(optimizer, total_steps,
                                           max_log_change=self.policy.config.max_log_change,
                                           feature_window=self.policy.config.feature_window,
                                           lower_only=self.policy.config.lower_only,
                                           base=self.policy.config.base)
        self.total_steps = total_steps
        self.lr_bound = lr_bound
        self.max_lr_factor = max_lr_factor
        self.features = ObservationBuilder(self.policy.config.feature_window)
        self.calls = 0
        self.last_action = 0.0
        super().__init__(optimizer)

    @classmethod
    def pretrained(cls, name: str, optimizer: Optimizer, **kwargs: Any) -> RLScheduler:
        """Scheduler with a policy shipped inside the package (``PRETRAINED``)."""
        return cls(optimizer, pretrained_path(name), **kwargs)

    def get_lr(self) -> list[float]:
        # Only reached from LRScheduler machinery; LRs are computed in step().
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def step(self, metric: SupportsFloat | None = None) -> None:  # type: ignore[override]
        """Record one training loss; every ``steps_per_action`` calls, let the policy act."""
        if metric is None:
            # LRScheduler.__init__ calls step() once without a metric (older torch has no
            # _is_initial flag; there last_epoch is still -1 during that call).
            if getattr(self, "_is_initial", False) or self.last_epoch == -1:
                self.last_epoch = 0
                self._last_lr = self.get_lr()
                return
            raise TypeError("RLScheduler.step() needs the metric: call sched.step(loss)")
        # detach() first: float() on a graph-connected loss warns (and the graph is not needed).
        loss = float(metric.detach()) if isinstance(metric, torch.Tensor) else float(metric)
        self.last_epoch += 1
        self._step_count += 1
        if self.residual is not None:
            self.residual.record(loss)
            self.calls += 1
            self._last_lr = self.get_lr()
            return
        config = self.policy.config
        if self.calls >= self.total_steps:
            # Past the budget the LR holds (as GreedyLR's): the policy was trained on budget
            # fractions up to 1 and its feature saturates there, so it would act blindly.
            self.calls += 1
            self._last_lr = self.get_lr()
            return
        if self.calls == 0:
            self.features.reset(loss, grad_norm_of(self.optimizer))
        else:
            self.features.record(loss)
        if self.calls % config.steps_per_action == 0:
            self._decide(loss)
        self.calls += 1
        self._last_lr = self.get_lr()

    def decide(self, val_loss: SupportsFloat) -> None:
        """Residual policies: after each evaluation, pass the validation loss; the policy then
        sets its correction of GreedyLR's LR until the next evaluation.

        With a ``greedy_step`` base a run that never calls it is exactly
        ``GreedyLR(opt, total_steps=N)``; with ``greedy_eval_budget`` the value is also the
        base's one decision.
        """
        if self.residual is None:
            raise TypeError("decide() is for greedy_residual policies; a direct policy acts in "
                            "step(loss)")
        value = float(val_loss.detach()) if isinstance(val_loss, torch.Tensor) else float(val_loss)
        self.residual.record_validation(value)
        self.last_action = self.policy.act(self.residual.observation())
        self.residual.act(self.last_action)
        self._last_lr = self.get_lr()

    def _decide(self, loss: float) -> None:
        config = self.policy.config
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.lr_bound is not None:
            reference = float(self.lr_bound())
            ceiling = reference
        else:
            reference = float(self.base_lrs[0])
            ceiling = self.max_lr_factor * reference
        if not (reference > 0 and math.isfinite(reference)):
            return  # no usable reference (e.g. a non-finite loss made the bound 0): hold
        obs = self.features.observe(loss, grad_norm_of(self.optimizer), lr, reference,
                                    self.calls / self.total_steps)
        self.last_action = self.policy.act(obs)
        apply_lr_action(self.optimizer, self.last_action, config.max_log_change,
                        config.min_relative_lr * reference, ceiling)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only (JSON-serialisable); the policy weights are not included."""
        return {
            "version": _STATE_VERSION,
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
            "calls": self.calls,
            "total_steps": self.total_steps,
            "last_action": self.last_action,
            "base_lrs": [float(lr) for lr in self.base_lrs],
            "last_lr": [float(lr) for lr in self._last_lr],
            "features": self.features.state_dict(),
            "residual": None if self.residual is None else self.residual.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the optimizer's LRs come from its own state)."""
        if state_dict.get("version") != _STATE_VERSION:
            raise ValueError(
                f"RLScheduler state version {state_dict.get('version')!r} is not supported "
                f"(expected {_STATE_VERSION})"
            )
        # Checked before anything is assigned, so a refused state leaves the scheduler as it was.
        saved = "direct" if state_dict.get("residual") is None else "residual"
        mine = "direct" if self.residual is None else "residual"
        if saved != mine:
            raise ValueError(f"this state was saved by a {saved} policy; this scheduler runs a "
                             f"{mine} one (kind {self.policy.config.kind!r})")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["step_count"])
        self.calls = int(state_dict["calls"])
        self.total_steps = int(state_dict["total_steps"])
        self.last_action = float(state_dict["last_action"])
        self.base_lrs = [float(v) for v in state_dict["base_lrs"]]
        self._last_lr = [float(v) for v in state_dict["last_lr"]]
        self.features.load_state_dict(state_dict["features"])
        if self.residual is not None:
            self.residual.load_state_dict(state_dict["residual"])
