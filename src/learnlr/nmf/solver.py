"""Projected stochastic gradient descent for NMF, driven by any torch optimizer + LR scheduler.

The factors are ``torch`` float64 tensors owned by :class:`StochasticNMF`, so a
``torch.optim.SGD`` and any ``torch.optim.lr_scheduler.LRScheduler`` (cosine, GreedyLR,
RLScheduler, ...) drive it exactly as they would drive a network::

    problem = planted_problem(40, 30, 4, seed=0)
    nmf = StochasticNMF(problem, oracle=GradientOracle("additive", sigma=0.05))
    opt = torch.optim.SGD(nmf.parameters(), lr=0.5 * nmf.stability_bound())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=500)
    for step in range(500):
        record = nmf.step(opt)          # noisy gradient, LR clipped to the bound, projection
        sched.step()

Each :meth:`StochasticNMF.step` caps every group's LR at ``safety * stability_bound`` for that
step only (the scheduler's own LR is restored afterwards, so its state is not disturbed).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from learnlr.control.divergence import has_diverged
from learnlr.nmf.problems import NMFProblem, check_seed, initialize_factors
from learnlr.nmf.stability import spectral_norm_squared, stability_bound

__all__ = ["GradientOracle", "NMFRun", "StepRecord", "StochasticNMF", "solve"]

ORACLE_MODES = ("exact", "minibatch", "additive")


@dataclass(frozen=True)
class GradientOracle:
    """How the stochastic gradient is formed.

    ``"exact"``: the full gradient. ``"minibatch"``: unbiased estimate from a random fraction of
    columns (for ``grad_W = R H^T``) and of rows (for ``grad_H = W^T R``), rescaled by the
    inverse fraction. ``"additive"``: the full gradient plus i.i.d. ``N(0, sigma^2)`` noise
    per entry.
    """

    mode: str = "exact"
    """One of ``"exact"``, ``"minibatch"``, ``"additive"``."""
    sigma: float = 0.0
    """Standard deviation of the additive noise (``"additive"`` only)."""
    batch_fraction: float = 0.25
    """Fraction of rows/columns sampled per step (``"minibatch"`` only)."""

    def __post_init__(self) -> None:
        if self.mode not in ORACLE_MODES:
            raise ValueError(f"mode must be one of {list(ORACLE_MODES)}, got {self.mode!r}")
        if not (0.0 <= self.sigma < math.inf):
            raise ValueError(f"sigma must be in [0, inf), got {self.sigma}")
        if not (0.0 < self.batch_fraction <= 1.0):
            raise ValueError(f"batch_fraction must be in (0, 1], got {self.batch_fraction}")

    def gradients(
        self, W: torch.Tensor, H: torch.Tensor, R: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy ``(grad_W, grad_H)`` given the residual ``R = W H - X``."""
        if self.mode == "minibatch":
            m, n = R.shape
            cols = torch.randperm(n, generator=generator)[: max(1, round(self.batch_fraction * n))]
            rows = torch.randperm(m, generator=generator)[: max(1, round(self.batch_fraction * m))]
            gW = R[:, cols] @ H[:, cols].T * (n / len(cols))
            gH = W[rows].T @ R[rows] * (m / len(rows))
            return gW, gH
        gW, gH = R @ H.T, W.T @ R
        if self.mode == "additive" and self.sigma > 0:
            gW = gW + self.sigma * torch.randn(gW.shape, generator=generator, dtype=gW.dtype)
            gH = gH + self.sigma * torch.randn(gH.shape, generator=generator, dtype=gH.dtype)
        return gW, gH


@dataclass(frozen=True)
class StepRecord:
    """What one projected SGD step saw and did."""

    loss: float
    """Exact loss ``0.5 ||X - W H||_F^2`` at the iterate *before* the step."""
    grad_norm: float
    """Euclidean norm of the (noisy) gradient that was applied."""
    lr: float
    """Learning rate actually used (after clipping to the bound)."""
    bound: float
    """``stability_bound(X, W, H)`` at the iterate before the step."""


class StochasticNMF:
    """Projected SGD state for one :class:`NMFProblem`.

    Args:
        problem: the instance.
        oracle: gradient noise model.
        clip: if given, entries are projected onto ``[0, clip]`` instead of ``[0, inf)``.
        init_seed: seed of :func:`initialize_factors`.
        noise_seed: seed of the gradient-noise generator.
        safety: the LR is capped at ``safety * stability_bound`` each step; ``None`` disables
            the cap (used by tests that demonstrate what happens above the bound).
    """

    def __init__(
        self,
        problem: NMFProblem,
        *,
        oracle: GradientOracle | None = None,
        clip: float | None = None,
        init_seed: int = 0,
        noise_seed: int = 0,
        safety: float | None = 0.95,
    ) -> None:
        if clip is not None and not (clip > 0 and math.isfinite(clip)):
            raise ValueError(f"clip must be a finite value > 0 or None, got {clip}")
        if safety is not None and not (0.0 < safety <= 1.0):
            raise ValueError(f"safety must be in (0, 1] or None, got {safety}")
        self.problem = problem
        self.oracle = oracle or GradientOracle()
        self.clip = clip
        self.safety = safety
        W0, H0 = initialize_factors(problem.X, problem.rank, seed=init_seed, clip=clip)
        self.X = torch.from_numpy(problem.X)
        # requires_grad=False: gradients are analytic (the oracle), autograd is never needed.
        self.W = torch.nn.Parameter(torch.from_numpy(W0), requires_grad=False)
        self.H = torch.nn.Parameter(torch.from_numpy(H0), requires_grad=False)
        self.generator = torch.Generator().manual_seed(noise_seed)

    def parameters(self) -> list[torch.nn.Parameter]:
        """``[W, H]``, to hand to a torch optimizer."""
        return [self.W, self.H]

    def loss(self) -> float:
        """Exact loss ``0.5 ||X - W H||_F^2`` at the current iterate."""
        with torch.no_grad():
            return 0.5 * float(((self.W @ self.H - self.X) ** 2).sum())

    def stability_bound(self) -> float:
        """:func:`learnlr.nmf.stability_bound` at the current iterate."""
        return stability_bound(self.problem.X, self.W.detach().numpy(), self.H.detach().numpy())

    def step(self, optimizer: torch.optim.Optimizer) -> StepRecord:
        """One noisy gradient step with ``optimizer``, then projection onto the feasible box."""
        with torch.no_grad():
            R = self.W @ self.H - self.X
            loss = 0.5 * float((R**2).sum())
            gW, gH = self.oracle.gradients(self.W, self.H, R, self.generator)
            # Same formula as stability_bound(), reusing ||R||_F = sqrt(2 loss) already computed.
            curvature = (spectral_norm_squared(self.W.numpy()) + spectral_norm_squared(self.H.numpy())
                         + math.sqrt(2.0 * loss)) if math.isfinite(loss) else math.inf
            bound = 2.0 / curvature if curvature > 0 else math.inf
            scheduled = [group["lr"] for group in optimizer.param_groups]
            used = scheduled[0]
            if self.safety is not None:
                used = min(used, self.safety * bound)
                for group in optimizer.param_groups:
                    group["lr"] = min(group["lr"], self.safety * bound)
            self.W.grad, self.H.grad = gW, gH
            optimizer.step()
            # Restore the scheduler's LR: the cap is a per-step safety net, not a new schedule.
            for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr
            self.W.clamp_(min=0.0, max=self.clip)
            self.H.clamp_(min=0.0, max=self.clip)
            grad_norm = math.sqrt(float((gW**2).sum() + (gH**2).sum()))
        return StepRecord(loss=loss, grad_norm=grad_norm, lr=used, bound=bound)


@dataclass
class NMFRun:
    """The history of one :func:`solve` call."""

    losses: list[float] = field(default_factory=list)
    """Exact loss before each step, then the final loss (``steps + 1`` entries unless diverged)."""
    lrs: list[float] = field(default_factory=list)
    """LR used at each step."""
    bounds: list[float] = field(default_factory=list)
    """Stability bound at each step."""
    grad_norms: list[float] = field(default_factory=list)
    """Norm of the applied (noisy) gradient at each step."""
    diverged: bool = False
    """True if the loss became non-finite or exceeded ``1e3`` times its initial value
    (:func:`learnlr.control.divergence.has_diverged`, the rule the RL environments use too)."""

    def steps_to(self, target: float) -> int | None:
        """First step index at which the loss is ``<= target`` (``None`` if never)."""
        for i, value in enumerate(self.losses):
            if value <= target:
                return i
        return None


SchedulerFactory = Callable[[torch.optim.Optimizer, StochasticNMF], object]


def solve(
    problem: NMFProblem,
    *,
    lr: float | None = None,
    lr_fraction: float = 0.5,
    steps: int = 500,
    scheduler_factory: SchedulerFactory | None = None,
    oracle: GradientOracle | None = None,
    clip: float | None = None,
    safety: float | None = 0.95,
    seed: int = 0,
    callback: Callable[[int, StepRecord], None] | None = None,
) -> NMFRun:
    """Run projected SGD for ``steps`` steps and return the loss/LR/bound history.

    The initial LR is ``lr`` if given, else ``lr_fraction * stability_bound`` at the
    initialization. ``scheduler_factory(optimizer, nmf)`` builds the LR scheduler (``nmf`` is
    the :class:`StochasticNMF`, for schedulers that read its ``stability_bound``); it is stepped
    after every optimizer step with the step's loss if its ``step`` takes a metric (GreedyLR,
    RLScheduler, ReduceLROnPlateau) and without arguments otherwise. ``seed`` seeds both the
    initialization and the gradient noise.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_seed("seed", seed)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite value > 0, got {lr}")
    if not (lr_fraction > 0 and math.isfinite(lr_fraction)):
        raise ValueError(f"lr_fraction must be a finite value > 0, got {lr_fraction}")
    nmf = StochasticNMF(problem, oracle=oracle, clip=clip, init_seed=seed, noise_seed=seed + 1,
                        safety=safety)
    initial_lr = lr if lr is not None else lr_fraction * nmf.stability_bound()
    optimizer = torch.optim.SGD(nmf.parameters(), lr=initial_lr)
    scheduler = scheduler_factory(optimizer, nmf) if scheduler_factory is not None else None
    takes_metric = _step_takes_metric(scheduler)
    run = NMFRun()
    first = None
    for step in range(steps):
        record = nmf.step(optimizer)
        run.losses.append(record.loss)
        run.lrs.append(record.lr)
        run.bounds.append(record.bound)
        run.grad_norms.append(record.grad_norm)
        first = record.loss if first is None else first
        if has_diverged(record.loss, first):
            run.diverged = True
            return run
        if callback is not None:
            callback(step, record)
        if scheduler is not None:
            if takes_metric:
                scheduler.step(record.loss)  # type: ignore[attr-defined]
            else:
                scheduler.step()  # type: ignore[attr-defined]
    final = nmf.loss()
    run.losses.append(final)
    run.diverged = has_diverged(final, run.losses[0])
    return run


def _step_takes_metric(scheduler: object | None) -> bool:
    if scheduler is None:
        return False
    params = inspect.signature(scheduler.step).parameters  # type: ignore[attr-defined]
    names = [p for p in params if p not in ("self", "epoch")]
    return bool(names)

