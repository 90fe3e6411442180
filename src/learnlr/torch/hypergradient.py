"""Hypergradient descent: SGD-HD and Adam-HD (Baydin et al., 2018).

"Online Learning Rate Adaptation with Hypergradient Descent" (ICLR 2018) adapts the learning
rate alpha online by gradient descent on alpha itself. With the update ``u_{t-1}`` that produced
``theta_{t-1}``, the derivative of the loss with respect to the previous learning rate is
``h_t = grad f(theta_{t-1}) . d u_{t-1} / d alpha``, and the rule is ``alpha_t = alpha_{t-1} -
beta * h_t`` (``beta`` is ``hypergrad_lr``). Concretely, with ``g_t`` the gradient at step t:

* SGD-HD:  ``alpha_t = alpha_{t-1} + beta * g_t . d_{t-1}`` where ``d`` is the previous update
  direction (``g_{t-1}``; with momentum, the momentum buffer; with Nesterov, the Nesterov
  direction), then ``theta_t = theta_{t-1} - alpha_t * d_t``.
* Adam-HD: ``alpha_t = alpha_{t-1} + beta * g_t . (m_hat_{t-1} / (sqrt(v_hat_{t-1}) + eps))``,
  then the usual Adam step with ``alpha_t``.

On the first step there is no previous direction, so ``h_1 = 0`` (the paper initialises
``grad f(theta_{-1}) = 0``).

Two granularities (``granularity=``):

* ``"group"`` (the paper's algorithm): one scalar learning rate per parameter group, stored in
  ``group["lr"]``; the dot product runs over every element of every parameter in the group.
* ``"parameter"``: one learning rate per *scalar* parameter (elementwise), the per-parameter
  variant the paper mentions; the hypergradient is the elementwise product ``g_t * d_{t-1}``.
  The per-element rates live in ``optimizer.state[p]["lr"]`` (a tensor shaped like ``p``), and
  ``group["lr"]`` is kept equal to their mean over the group so that logging code that reads
  ``group["lr"]`` shows a sensible trajectory. Writing a new value into ``group["lr"]`` (by hand
  or by an LR scheduler) rescales every per-element rate of the group by the same ratio, or,
  when their mean is not positive (a ratio would flip signs or do nothing), sets every rate to
  the new value; rates created at that step start at the new value.
  Scale note: the mean per-element change is ``beta * (g_t . d_{t-1}) / n`` for a group of
  ``n`` scalars, so the same ``beta`` moves the rates ``n`` times less than ``"group"`` does;
  multiply ``beta`` by ``n`` for comparable adaptation speed.

Differences from the authors' reference code (``gbaydin/hypergradient-descent``), on purpose:
it updates ``group["lr"]`` once *per parameter tensor* inside the loop and folds ``eps`` into
``sqrt(v)`` before bias correction; here the group rate is updated once per step from the
dot product over the whole group, and ``m_hat / (sqrt(v_hat) + eps)`` is the paper's formula.

Example:
    >>> import torch
    >>> from learnlr.torch.hypergradient import AdamHD
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = AdamHD([w], lr=1e-2, hypergrad_lr=1e-4, granularity="group")
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     (w ** 2).sum().backward()
    ...     opt.step()
    >>> opt.param_groups[0]["lr"] > 1e-2  # consecutive gradients agree, so the rate grew
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from learnlr.torch._args import as_real, check_real

_GRANULARITIES = ("group", "parameter")


def _check_lr(lr: object) -> float:
    return check_real("lr", lr, lambda v: v > 0.0, "a finite real number > 0")


def _check_non_negative(name: str, value: object) -> float:
    return check_real(name, value, lambda v: v >= 0.0, "a finite real number >= 0")


def _check_betas(betas: object) -> tuple[float, float]:
    # betas=0.9 (not a pair) or a pair holding a string must be a ValueError, not a TypeError.
    values = [as_real(b) for b in betas] if isinstance(betas, Iterable) else []
    valid = [v for v in values if v is not None and 0.0 <= v < 1.0]
    if len(values) != 2 or len(valid) != 2:
        raise ValueError(f"betas={betas!r} is invalid: expected two real numbers in [0, 1)")
    return valid[0], valid[1]


def _rate_dtype(p: torch.Tensor) -> torch.dtype:
    # fp16/bf16 rates cannot hold alpha + beta * h for small beta (1e-7 rounds away), and fp16
    # dot products over large tensors overflow: the rates and the hypergradient use >= float32.
    return torch.promote_types(p.dtype, torch.float32)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a . b`` over all elements, in at least float32."""
    if a.dtype.itemsize < 4:  # 16-bit (or 8-bit) floats; the test skips a cast per tensor else
        a, b = a.float(), b.float()
    return float(torch.dot(a.reshape(-1), b.reshape(-1)))


def _check_granularity(granularity: str) -> None:
    if granularity not in _GRANULARITIES:
        raise ValueError(
            f"granularity={granularity!r} is invalid: expected one of {list(_GRANULARITIES)}"
        )


class _HypergradientOptimizer(Optimizer):
    """Shared bookkeeping for the two granularities (not public)."""

    def _group_lr_tensors(self, group: dict[str, Any]) -> None:
        """Apply an external change of ``group['lr']``, then create missing per-element rates.

        Creating after rescaling keeps a rate born at this step at the new value (not rescaled
        once more).
        """
        new = float(group["lr"])
        reported = group.get("_reported_lr")
        if reported is not None and new != reported:
            self._move_rates(group, new, reported)
        for p in group["params"]:
            # p.grad first: self.state is a defaultdict, so no entry for a parameter without one
            if p.grad is not None and "lr" not in self.state[p]:
                self.state[p]["lr"] = torch.full_like(p, new, dtype=_rate_dtype(p))

    def _move_rates(self, group: dict[str, Any], new: float, mean: float) -> None:
        """Someone (a scheduler, a user) wrote ``group['lr']``: move the rates' mean to it."""
        for p in group["params"]:
            rates = self.state[p].get("lr")
            if rates is None:
                continue
            if mean > 0.0:
                rates.mul_(new / mean)  # keep the per-element profile
            else:
                rates.fill_(new)  # a ratio to a mean <= 0 flips signs (or, at 0, does nothing)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, then the per-element rates restored at their saved precision.

        torch casts every floating state tensor to its parameter's dtype, which would round
        float32 rates of a bf16/fp16 parameter back to 16 bits.
        """
        super().load_state_dict(state_dict)
        saved_ids = (i for group in state_dict["param_groups"] for i in group["params"])
        params = (p for group in self.param_groups for p in group["params"])
        for saved_id, p in zip(saved_ids, params, strict=True):
            rates = state_dict["state"].get(saved_id, {}).get("lr")
            if rates is not None:
                self.state[p]["lr"] = rates.to(device=p.device, dtype=_rate_dtype(p), copy=True)

    def _report_group_lr(self, group: dict[str, Any]) -> None:
        total, count = 0.0, 0
        for p in group["params"]:
            lr = self.state[p].get("lr")
            if lr is not None:
                total += float(lr.sum())
                count += lr.numel()
        if count:
            group["lr"] = total / count
            group["_reported_lr"] = group["lr"]


class SGDHD(_HypergradientOptimizer):
    """SGD with hypergradient descent on the learning rate (SGD-HD, Baydin et al. 2018).

    Args:
        params: parameters or parameter groups.
        lr: initial learning rate ``alpha_0`` (> 0).
        hypergrad_lr: hypergradient step ``beta`` (>= 0; 0 gives plain SGD).
        momentum: heavy-ball momentum in [0, 1).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 penalty added to the gradient (>= 0).
        granularity: ``"group"`` (one rate per group, the paper) or ``"parameter"`` (one rate
            per scalar parameter).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = SGDHD([w], lr=0.1, hypergrad_lr=0.01, granularity="parameter")
        >>> opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> [round(v, 3) for v in w.tolist()]
        [0.8, -1.6]
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        hypergrad_lr: float = 1e-4,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        granularity: str = "group",
    ) -> None:
        lr = _check_lr(lr)
        hypergrad_lr = _check_non_negative("hypergrad_lr", hypergrad_lr)
        weight_decay = _check_non_negative("weight_decay", weight_decay)
        momentum = check_real(
            "momentum", momentum, lambda v: 0.0 <= v < 1.0, "a real number with 0 <= momentum < 1"
        )
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True is invalid with momentum=0: expected momentum > 0")
        _check_granularity(granularity)
        defaults = {
            "lr": float(lr),
            "hypergrad_lr": float(hypergrad_lr),
            "momentum": float(momentum),
            "nesterov": bool(nesterov),
            "weight_decay": float(weight_decay),
            "granularity": granularity,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One SGD-HD step: first adapt the rate from ``g_t . d_{t-1}``, then move."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            per_element = group["granularity"] == "parameter"
            if per_element:
                self._group_lr_tensors(group)
            beta, mu, wd = group["hypergrad_lr"], group["momentum"], group["weight_decay"]
            grads: list[tuple[torch.Tensor, torch.Tensor]] = []
            hypergrad = 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if wd == 0.0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                previous = state.get("direction")
                if previous is not None:
                    if per_element:
                        # alpha_t = alpha_{t-1} + beta * g_t * d_{t-1}, elementwise
                        state["lr"].addcmul_(grad, previous, value=beta)
                    else:
                        hypergrad += _dot(grad, previous)
                grads.append((p, grad))
            if not per_element:
                group["lr"] = group["lr"] + beta * hypergrad
            for p, grad in grads:
                state = self.state[p]
                direction = grad
                if mu != 0.0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.clone()
                    else:
                        buf.mul_(mu).add_(grad)
                    direction = grad.add(buf, alpha=mu) if group["nesterov"] else buf
                # d_t, what the next step's hypergradient is taken against
                state["direction"] = direction.clone()
                if per_element:
                    p.addcmul_(state["lr"], direction, value=-1.0)
                else:
                    p.add_(direction, alpha=-group["lr"])
            if per_element:
                self._report_group_lr(group)
        return loss


class AdamHD(_HypergradientOptimizer):
    """Adam with hypergradient descent on the learning rate (Adam-HD, Baydin et al. 2018).

    Args:
        params: parameters or parameter groups.
        lr: initial learning rate ``alpha_0`` (> 0).
        hypergrad_lr: hypergradient step ``beta`` (>= 0; 0 gives plain Adam). The paper uses
            1e-7 for Adam-HD (and 1e-3 for SGD-HD).
        betas: Adam's ``(beta1, beta2)``, each in [0, 1).
        eps: Adam's epsilon (> 0).
        weight_decay: L2 penalty added to the gradient (>= 0), as in the paper's Adam.
        granularity: ``"group"`` or ``"parameter"`` (see the module docstring).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        granularity: str = "group",
    ) -> None:
        lr = _check_lr(lr)
        hypergrad_lr = _check_non_negative("hypergrad_lr", hypergrad_lr)
        weight_decay = _check_non_negative("weight_decay", weight_decay)
        betas = _check_betas(betas)
        eps = check_real("eps", eps, lambda v: v > 0.0, "a finite real number > 0")
        _check_granularity(granularity)
        defaults = {
            "lr": float(lr),
            "hypergrad_lr": float(hypergrad_lr),
            "betas": (float(betas[0]), float(betas[1])),
            "eps": float(eps),
            "weight_decay": float(weight_decay),
            "granularity": granularity,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One Adam-HD step: adapt the rate from the previous Adam direction, then move."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            per_element = group["granularity"] == "parameter"
            if per_element:
                self._group_lr_tensors(group)
            beta = group["hypergrad_lr"]
            beta1, beta2 = group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            grads: list[tuple[torch.Tensor, torch.Tensor]] = []
            hypergrad = 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if wd == 0.0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                if state.get("step", 0) > 0:
                    # d_{t-1} = m_hat_{t-1} / (sqrt(v_hat_{t-1}) + eps), from the stored moments
                    t = state["step"]
                    m_hat = state["exp_avg"] / (1.0 - beta1**t)
                    v_hat = state["exp_avg_sq"] / (1.0 - beta2**t)
                    previous = m_hat / (v_hat.sqrt() + eps)
                    if per_element:
                        state["lr"].addcmul_(grad, previous, value=beta)
                    else:
                        hypergrad += _dot(grad, previous)
                grads.append((p, grad))
            if not per_element:
                group["lr"] = group["lr"] + beta * hypergrad
            for p, grad in grads:
                state = self.state[p]
                if state.get("step", 0) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                m_hat = state["exp_avg"] / (1.0 - beta1**t)
                v_hat = state["exp_avg_sq"] / (1.0 - beta2**t)
                direction = m_hat / (v_hat.sqrt() + eps)
                if per_element:
                    p.addcmul_(state["lr"], direction, value=-1.0)
                else:
                    p.add_(direction, alpha=-group["lr"])
            if per_element:
                self._report_group_lr(group)
        return loss
