"""Stochastic line search (SLS, Vaswani et al., 2019, "Painless Stochastic Gradient").

Each step runs Armijo backtracking on the *current mini-batch*: with loss ``f``, gradient ``g``
and a candidate step size ``eta``, accept ``eta`` when

    f(w - eta * g) <= f(w) - c * eta * ||g||^2

and otherwise shrink ``eta <- beta * eta`` and try again. The search starts from the previous
step's accepted size, reset by ``reset_option`` (the paper's Algorithm 3, as in the authors'
code ``IssamLaradji/sls``):

* ``0``: keep the previous step size;
* ``1``: increase it by ``gamma ** (b / n)`` (``= gamma ** (1 / n_batches_per_epoch)``), capped
  at ``max_step_size``, so it can grow by at most ``gamma`` per epoch;
* ``2``: restart from the initial step size ``lr`` every step.

The first step starts from ``lr`` put through the same reset. If no step size passes within
``max_backtracks`` tries, a tiny fallback step of ``1e-6`` is taken (as the reference code
does): ``param_groups[0]["lr"]`` reports that ``1e-6``, and the shrunken size is kept in
``state["step_size"]`` for the next search. When ``||g|| < 1e-8`` no search is run and the
parameters stay put.

The closure must compute and return the loss of the mini-batch. SLS zeroes the gradients,
calls it once with gradients enabled (calling ``backward()`` itself unless the closure already
did), and then calls it under ``torch.no_grad()`` for each trial point, so a closure that
calls ``backward()`` must guard it with ``if torch.is_grad_enabled():``. The search runs along a
copy of the gradients, so the closure may zero them (in place or to None). The CPU (and CUDA)
RNG state is restored before every call so that all evaluations of one step see the same
dropout mask.

Known limitation: every trial is a forward pass in the model's current mode, so in training mode
BatchNorm layers update their running statistics once per evaluation (a step with ``k`` trials
moves them ``k + 1`` times, partly with the activations of rejected trial points). Calling
``model.eval()`` for the trials avoids that but searches a different loss (running instead of
batch statistics); which trade-off fits is the user's call.

Under torch.distributed (initialised, world size > 1) each rank evaluates its own shard, so the
loss and every trial loss are averaged over the ranks of the default process group (one
all-reduce each) before the Armijo test: with gradients that agree across ranks (DDP averages
them), every rank accepts the same step size after the same number of trials.

Example:
    >>> import torch
    >>> from learnlr.torch.line_search import SLS
    >>> w = torch.nn.Parameter(torch.tensor([3.0]))
    >>> opt = SLS([w], lr=1.0, reset_option=2)
    >>> _ = opt.step(lambda: (w ** 2).sum())  # eta=1 fails Armijo, so it backtracks
    >>> opt.state_dict()["state"]["step_size"] < 1.0
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from learnlr.torch._args import check_int, check_real
from learnlr.torch.distributed import MetricReducer, is_distributed

_FALLBACK_STEP_SIZE = 1e-6
_MIN_GRAD_NORM = 1e-8


def _mean_over_ranks(value: float, reducer: MetricReducer | None) -> float:
    """``value`` averaged over the ranks (itself on a single process)."""
    return value if reducer is None else reducer.reduce_floats([value])[0]


class SLS(Optimizer):
    """SGD with a stochastic Armijo line search (Vaswani et al. 2019).

    Args:
        params: the parameters (one parameter group: the search runs over all of them jointly).
        lr: initial step size ``eta_0`` (> 0), also the restart value for ``reset_option=2``.
        c: Armijo constant in (0, 1); the paper's default is 0.1.
        beta: backtracking factor in (0, 1); default 0.9.
        gamma: growth factor per epoch for ``reset_option=1`` (>= 1); default 2.
        reset_option: 0 (keep), 1 (grow by ``gamma ** (1/n_batches_per_epoch)``), 2 (restart).
        n_batches_per_epoch: ``n / b`` in the paper's reset rule (>= 1).
        max_step_size: ``eta_max``, the cap after a reset (> 0); default 10.
        max_backtracks: trials per step before the fallback step (>= 1); default 100.

    The current step size is ``optimizer.state["step_size"]``; the size the parameters moved by
    is written into ``param_groups[0]["lr"]`` after every step so that LR logging works
    unchanged (the two differ only after a failed search, where ``lr`` is the fallback ``1e-6``).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        *,
        c: float = 0.1,
        beta: float = 0.9,
        gamma: float = 2.0,
        reset_option: int = 1,
        n_batches_per_epoch: int = 500,
        max_step_size: float = 10.0,
        max_backtracks: int = 100,
    ) -> None:
        lr = check_real("lr", lr, lambda v: v > 0.0, "a finite real number > 0")
        c = check_real("c", c, lambda v: 0.0 < v < 1.0, "a real number with 0 < c < 1")
        beta = check_real("beta", beta, lambda v: 0.0 < v < 1.0, "a real number with 0 < beta < 1")
        gamma = check_real("gamma", gamma, lambda v: v >= 1.0, "a finite real number >= 1")
        reset_option = check_int("reset_option", reset_option, 0, "the int 0, 1 or 2", 2)
        n_batches_per_epoch = check_int(
            "n_batches_per_epoch", n_batches_per_epoch, 1, "an int >= 1"
        )
        max_step_size = check_real(
            "max_step_size", max_step_size, lambda v: v > 0.0, "a finite real number > 0"
        )
        max_backtracks = check_int("max_backtracks", max_backtracks, 1, "an int >= 1")
        defaults = {
            "lr": float(lr),
            "c": float(c),
            "beta": float(beta),
            "gamma": float(gamma),
            "reset_option": int(reset_option),
            "n_batches_per_epoch": int(n_batches_per_epoch),
            "max_step_size": float(max_step_size),
            "max_backtracks": int(max_backtracks),
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"params has {len(self.param_groups)} parameter groups: SLS searches one step "
                "size over all parameters jointly, so expected exactly 1"
            )
        # Global (not per-parameter) state lives under string keys, as in the reference code.
        self.state["step_size"] = float(lr)
        self.state["initial_step_size"] = float(lr)
        self.state["step"] = 0
        self.state["n_forwards"] = 0
        self.state["n_backtracks"] = 0

    def _reset(self, step_size: float) -> float:
        group = self.param_groups[0]
        option = group["reset_option"]
        if option == 1:
            grown = step_size * group["gamma"] ** (1.0 / group["n_batches_per_epoch"])
            return min(grown, group["max_step_size"])
        if option == 2:
            return self.state["initial_step_size"]
        return step_size

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One SLS step on the mini-batch that ``closure`` evaluates; returns its loss."""
        if closure is None:
            raise ValueError("closure=None is invalid: SLS needs a closure returning the loss")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

        def evaluate() -> torch.Tensor:
            # Same random state for every evaluation of this step (dropout masks agree).
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            return closure()

        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss = evaluate()
            if all(p.grad is None for p in params):
                loss.backward()
        self.state["n_forwards"] += 1
        # One reducer per step, None on a single process: ranks must agree on every decision.
        reducer = MetricReducer("mean") if is_distributed() else None

        with torch.no_grad():
            # Copies, not p.grad itself: a closure that zeroes gradients in place would wipe
            # the search direction at the first trial.
            grads = [
                p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                for p in params
            ]
            grad_norm_sq = float(sum(torch.sum(g * g) for g in grads))
            step_size = self._reset(self.state["step_size"])
            used = step_size
            loss_value = _mean_over_ranks(float(loss.detach()), reducer)
            if math.sqrt(grad_norm_sq) >= _MIN_GRAD_NORM:
                step_size, used = self._search(
                    params, grads, grad_norm_sq, loss_value, step_size, evaluate, reducer
                )
        self.state["step_size"] = step_size  # the shrunken size seeds the next search
        self.state["step"] += 1
        group["lr"] = used  # what the parameters moved by (the fallback size after a failure)
        return loss

    def _search(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        grad_norm_sq: float,
        loss_value: float,
        step_size: float,
        evaluate: Callable[[], torch.Tensor],
        reducer: MetricReducer | None,
    ) -> tuple[float, float]:
        """Armijo backtracking from ``step_size``; returns (last size tried, size moved by)."""
        group = self.param_groups[0]
        start = [p.detach().clone() for p in params]
        for _ in range(group["max_backtracks"]):
            for p, p0, g in zip(params, start, grads, strict=True):
                p.copy_(p0).add_(g, alpha=-step_size)
            loss_next = _mean_over_ranks(float(evaluate()), reducer)
            self.state["n_forwards"] += 1
            if loss_next <= loss_value - group["c"] * step_size * grad_norm_sq:
                return step_size, step_size
            step_size *= group["beta"]
            self.state["n_backtracks"] += 1
        for p, p0, g in zip(params, start, grads, strict=True):
            p.copy_(p0).add_(g, alpha=-_FALLBACK_STEP_SIZE)
        return step_size, _FALLBACK_STEP_SIZE

    def state_dict(self) -> dict[str, Any]:
        """Param-group settings plus the global search state (plain floats and ints)."""
        return {
            "state": {
                key: self.state[key]
                for key in ("step_size", "initial_step_size", "step", "n_forwards", "n_backtracks")
            },
            "param_groups": [
                {key: value for key, value in group.items() if key != "params"}
                for group in self.param_groups
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups, expected "
                f"{len(self.param_groups)}"
            )
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            group.update(saved)
        for key, value in state_dict["state"].items():
            self.state[key] = value
