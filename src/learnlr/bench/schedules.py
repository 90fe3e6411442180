"""The registry of every schedule (and optimizer-level peer) the benchmark runs side by side.

A schedule entry turns ``(params, optimizer name, base LR, budget)`` into an optimizer plus
:class:`TrainingHooks` that tell the runner when and how to step it:

* ``step_on="step"``: ``scheduler.step()`` after every optimizer step (fixed schedules);
* ``step_on="step_loss"``: ``scheduler.step(train_loss)`` after every optimizer step
  (``greedy_step``, how the GreedyLR paper ran it);
* ``step_on="eval_loss"``: ``scheduler.step(val_loss)`` after every evaluation (plateau,
  ``greedy_eval``, ``hf_greedy``: the way transformers' Trainer steps them);
* ``step_on="step_then_eval"``: ``scheduler.step()`` after every optimizer step (the budget
  envelope) and ``scheduler.decide(val_loss)`` after each evaluation;
* ``step_on="step_loss_then_eval"``: ``scheduler.step(train_loss)`` after every optimizer step
  and ``scheduler.decide(val_loss)`` after each evaluation (``rl_deep``, the residual policy;
  ``greedy_eval_budget``, whose step(loss) is the clock and the training-loss brake);
* ``needs_closure``: the optimizer wants ``step(closure)`` (stochastic line search);
* ``train_mode`` / ``eval_mode``: called before training steps / before evaluation
  (schedule-free optimizers keep two iterates and must be switched).

Optimizer-level peers (hypergradient descent, SLS, schedule-free, Prodigy, D-Adaptation)
*replace* the optimizer; each lists the optimizer columns it belongs to (``optimizers``), and a
cell whose column is not listed is not run. Example::

    >>> import torch
    >>> from learnlr.bench.schedules import build_schedule
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt, hooks = build_schedule("cosine", [w], "sgd", base_lr=0.1, budget_steps=10,
    ...                             eval_every=5)
    >>> hooks.step_on
    'step'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as tls

from learnlr.plugins import load_schedule_providers

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD with momentum 0.9",
    "adamw": "AdamW (torch defaults: betas 0.9/0.999, weight decay 0.01)",
    "adagrad": "Adagrad (torch defaults)",
}

STEP_ON = ("none", "step", "step_loss", "eval_loss", "step_then_eval", "step_loss_then_eval")


@dataclass
class TrainingHooks:
    """How the runner drives one optimizer/scheduler pair."""

    optimizer: Optimizer
    """The optimizer the runner calls ``step`` on."""
    scheduler: Any | None = None
    """The LR scheduler, or None when the optimizer adapts its own step size."""
    step_on: str = "none"
    """When to step the scheduler: one of :data:`STEP_ON`."""
    needs_closure: bool = False
    """True when ``optimizer.step`` must receive a closure that returns the batch loss."""
    train_mode: Callable[[], None] | None = None
    """Called before training steps (schedule-free optimizers)."""
    eval_mode: Callable[[], None] | None = None
    """Called before each evaluation (schedule-free optimizers)."""


@dataclass(frozen=True)
class BuildContext:
    """Everything a schedule builder may use."""

    optimizer_name: str
    base_lr: float
    budget_steps: int
    eval_every: int


Builder = Callable[[Sequence[torch.nn.Parameter], BuildContext], TrainingHooks]


@dataclass(frozen=True)
class ScheduleSpec:
    """One registry entry."""

    name: str
    kind: str
    """``"fixed"`` (a function of the step), ``"adaptive"`` (feedback scheduler on top of the
    column's optimizer) or ``"peer"`` (replaces the optimizer)."""
    description: str
    builder: Builder
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)
    """Optimizer columns this entry runs in."""
    uses_base_lr: bool = True
    """False for peers that set their own step size (Prodigy, D-Adaptation, SLS)."""
    requires: tuple[str, ...] = ()
    """Third-party modules the builder imports (all in the ``learnlr[bench]`` extra)."""
    fingerprint: Callable[[], str] | None = None
    """Digest of files the builder reads (a shipped policy): part of the cell's config hash, so
    a retrained policy does not reuse the cells the old one produced."""

    def missing_modules(self) -> list[str]:
        """The modules of :attr:`requires` that cannot be imported here."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> Optimizer:
    """The column's plain optimizer (``sgd`` = SGD momentum 0.9, ``adamw``, ``adagrad``)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")


def _fixed(factory: Callable[[Optimizer, BuildContext], Any]) -> Builder:
    def build(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
        opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
        return TrainingHooks(opt, factory(opt, ctx), step_on="step")

    return build


def _constant(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    return TrainingHooks(make_optimizer(ctx.optimizer_name, params, ctx.base_lr))


def _warmup_cosine_lambda(budget: int) -> Callable[[int], float]:
    warmup = max(1, round(0.05 * budget))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, budget - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _onecycle(opt: Optimizer, ctx: BuildContext) -> Any:
    # Adagrad has neither momentum nor betas, so OneCycle cannot cycle them there.
    return tls.OneCycleLR(
        opt,
        max_lr=ctx.base_lr,
        total_steps=ctx.budget_steps,
        cycle_momentum=ctx.optimizer_name != "adagrad",
    )


def _plateau(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # patience counts evaluations; a run has ~10-20 of them, so torch's default 10 would never act.
    sched = tls.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2)
    return TrainingHooks(opt, sched, step_on="eval_loss")


def _greedy_step(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from learnlr.torch.greedy import GreedyLR

    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # learnlr's default: GreedyLR told the budget, every other argument at its default.
    return TrainingHooks(opt, GreedyLR(opt, total_steps=ctx.budget_steps), step_on="step_loss")


def _greedy_reactive(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from learnlr.torch.greedy import GreedyLR

    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # Without a budget: the paper's purely reactive rule (F=0.95, patience 10, window 50;
    # bounds 0.1x..1x base LR, no anneal).
    return TrainingHooks(opt, GreedyLR(opt), step_on="step_loss")


def _greedy_eval(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from learnlr.control.greedy import PER_EVAL
    from learnlr.torch.greedy import GreedyLR

    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # One call per evaluation with the documented per-evaluation defaults (PER_EVAL).
    sched = GreedyLR(opt, **PER_EVAL)
    return TrainingHooks(opt, sched, step_on="eval_loss")


def _greedy_eval_budget(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from learnlr.torch.clocked import EvalGreedyLR

    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # What the HF and Lightning eval modes build: every optimizer step moves the budget
    # envelope and feeds the training loss to the brake (step(loss)), GreedyLR decides on the
    # validation loss after each evaluation (decide()).
    sched = EvalGreedyLR(opt, total_steps=ctx.budget_steps)
    return TrainingHooks(opt, sched, step_on="step_loss_then_eval")


def _wsd(opt: Optimizer, ctx: BuildContext) -> Any:
    from learnlr.control.budget import Budget

    # Hagele et al. 2024 / transformers warmup_stable_decay: 5 % linear warmup, constant, 1-sqrt
    # cooldown over the last 20 % (the same envelope GreedyLR's budget mode uses).
    budget = Budget.from_fraction(ctx.budget_steps, max(1, round(0.05 * ctx.budget_steps)), 0.2)
    return tls.LambdaLR(opt, budget.multiplier)


def _hf_greedy(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from transformers import GreedyLR as HFGreedyLR

    opt = make_optimizer(ctx.optimizer_name, params, ctx.base_lr)
    # Trainer builds it with its defaults (min_lr=1e-3, max_lr=1.0, patience=10, no smoothing)
    # and steps it after each evaluation on the eval loss; we reproduce exactly that.
    return TrainingHooks(opt, HFGreedyLR(opt), step_on="eval_loss")


def _greedy_fingerprint() -> str:
    """Digest of GreedyLR's default sets: a change to a default re-runs the GreedyLR cells (and
    only them) instead of silently reusing cells the old defaults produced."""
    from learnlr.control.budget import DEFAULT_ANNEAL_FRACTION
    from learnlr.control.greedy import PER_EVAL
    from learnlr.control.schedule import BUDGET_DEFAULTS, REACTIVE_DEFAULTS

    defaults = {"reactive": REACTIVE_DEFAULTS, "budget": BUDGET_DEFAULTS, "per_eval": PER_EVAL,
                "anneal_fraction": DEFAULT_ANNEAL_FRACTION}
    canonical = json.dumps(defaults, sort_keys=True, separators=(",", ":"))
    return f"greedy-defaults:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _greedy_eval_budget_fingerprint() -> str:
    """The GreedyLR digest plus the budget-aware per-evaluation defaults and the brake's settings
    (its own digest, so a change there re-runs only this schedule's cells)."""
    from learnlr.control.brake import (
        DEFAULT_LOST_PROGRESS,
        DEFAULT_MARGIN,
        GUARD_BACKOFF,
        GUARD_LOST_PROGRESS,
        GUARD_WATCH,
        GUARD_WINDOW,
    )
    from learnlr.control.schedule import (
        BUDGET_PER_EVAL,
        EVAL_MIN_LR_RATIO,
        EVAL_WARMUP_FRACTION,
    )

    settings: dict[str, object] = {"budget_per_eval": BUDGET_PER_EVAL, "brake": DEFAULT_MARGIN}
    # Both added after cells were made without them (= 0): those cells stay valid while 0.
    if DEFAULT_LOST_PROGRESS:
        settings["lost_progress"] = DEFAULT_LOST_PROGRESS
    if EVAL_WARMUP_FRACTION:
        settings["warmup_fraction"] = EVAL_WARMUP_FRACTION
    settings["min_lr_ratio"] = EVAL_MIN_LR_RATIO
    settings["warmup_guard"] = {"window": GUARD_WINDOW, "backoff": GUARD_BACKOFF,
                                "lost_progress": GUARD_LOST_PROGRESS, "watch": GUARD_WATCH}
    extra = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{_greedy_fingerprint()}|{extra}".encode()).hexdigest()[:16]
    return f"greedy-eval-budget:{digest}"


def schedule_fingerprint(name: str) -> str:
    """The registry entry's :attr:`ScheduleSpec.fingerprint` (``""`` for none or an unknown name)."""
    spec = SCHEDULES.get(name)
    return spec.fingerprint() if spec is not None and spec.fingerprint is not None else ""


def _hd(cls_name: str, granularity: str) -> Builder:
    def build(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
        from learnlr.torch import hypergradient

        if cls_name == "SGDHD":
            # Baydin et al. 2018: beta = 1e-3 for SGD-HD; momentum as in the SGD column.
            opt = hypergradient.SGDHD(
                params, lr=ctx.base_lr, hypergrad_lr=1e-3, momentum=0.9, granularity=granularity
            )
        else:
            # Baydin et al. 2018: beta = 1e-7 for Adam-HD.
            opt = hypergradient.AdamHD(
                params, lr=ctx.base_lr, hypergrad_lr=1e-7, granularity=granularity
            )
        return TrainingHooks(opt)

    return build


def _sls(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from learnlr.torch.line_search import SLS

    # Vaswani et al. 2019 defaults: eta_0 = 1, c = 0.1, reset option 1. The workload contract
    # has no epoch, so one evaluation interval stands in for "an epoch" in the growth rule.
    opt = SLS(params, lr=1.0, reset_option=1, n_batches_per_epoch=max(1, ctx.eval_every))
    return TrainingHooks(opt, needs_closure=True)


def _schedulefree(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    import schedulefree

    warmup = max(1, round(0.05 * ctx.budget_steps))  # the package README recommends a warmup
    if ctx.optimizer_name == "sgd":
        opt = schedulefree.SGDScheduleFree(
            params, lr=ctx.base_lr, momentum=0.9, warmup_steps=warmup
        )
    else:
        opt = schedulefree.AdamWScheduleFree(
            params, lr=ctx.base_lr, weight_decay=0.01, warmup_steps=warmup
        )
    return TrainingHooks(opt, train_mode=opt.train, eval_mode=opt.eval)


def _prodigy(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    from prodigyopt import Prodigy

    # lr=1.0 is the package's recommendation: Prodigy estimates the step size itself.
    # The package prints a notice on construction; keep it off the progress bar.
    with contextlib.redirect_stdout(io.StringIO()):
        opt = Prodigy(params, lr=1.0, weight_decay=0.01)
    return TrainingHooks(opt)


def _dadapt(params: Sequence[torch.nn.Parameter], ctx: BuildContext) -> TrainingHooks:
    import dadaptation

    if ctx.optimizer_name == "sgd":
        opt: Optimizer = dadaptation.DAdaptSGD(params, lr=1.0, momentum=0.9)
    elif ctx.optimizer_name == "adamw":
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice; keep output clean
            opt = dadaptation.DAdaptAdam(params, lr=1.0, decouple=True, weight_decay=0.01)
    else:
        opt = dadaptation.DAdaptAdaGrad(params, lr=1.0)
    return TrainingHooks(opt)


def _spec(name: str, kind: str, description: str, builder: Builder, **kw: Any) -> ScheduleSpec:
    return ScheduleSpec(name=name, kind=kind, description=description, builder=builder, **kw)


SCHEDULES: dict[str, ScheduleSpec] = {
    s.name: s
    for s in [
        _spec("constant", "fixed", "base LR throughout", _constant),
        _spec(
            "step", "fixed", "x0.1 at 50% and 75% of the budget",
            _fixed(lambda o, c: tls.MultiStepLR(
                o, milestones=[c.budget_steps // 2, (3 * c.budget_steps) // 4], gamma=0.1)),
        ),
        _spec(
            "exponential", "fixed", "exponential decay to 1% of base LR at the end",
            _fixed(lambda o, c: tls.ExponentialLR(o, gamma=0.01 ** (1.0 / c.budget_steps))),
        ),
        _spec(
            "linear", "fixed", "linear decay to 0",
            _fixed(lambda o, c: tls.LinearLR(
                o, start_factor=1.0, end_factor=0.0, total_iters=c.budget_steps)),
        ),
        _spec(
            "cosine", "fixed", "cosine decay to 0",
            _fixed(lambda o, c: tls.CosineAnnealingLR(o, T_max=c.budget_steps)),
        ),
        _spec(
            "warmup_cosine", "fixed", "linear warmup over 5% of the budget, then cosine to 0",
            _fixed(lambda o, c: tls.LambdaLR(o, _warmup_cosine_lambda(c.budget_steps))),
        ),
        _spec(
            "polynomial", "fixed", "polynomial decay to 0, power 2",
            _fixed(lambda o, c: tls.PolynomialLR(o, total_iters=c.budget_steps, power=2.0)),
        ),
        _spec("onecycle", "fixed", "OneCycle, peak = base LR, 30% warmup", _fixed(_onecycle)),
        _spec("wsd", "fixed", "warmup 5%, constant, 1-sqrt cooldown over the last 20% (WSD)",
              _fixed(_wsd)),
        _spec(
            "plateau", "adaptive", "ReduceLROnPlateau on val loss (x0.5, patience 2 evals)",
            _plateau,
        ),
        _spec(
            "greedy_step", "adaptive",
            "learnlr GreedyLR (default: told the budget) after every step on the training loss",
            _greedy_step, fingerprint=_greedy_fingerprint,
        ),
        _spec(
            "greedy_reactive", "adaptive",
            "learnlr GreedyLR without a budget (the paper's reactive rule), every step",
            _greedy_reactive, fingerprint=_greedy_fingerprint,
        ),
        _spec(
            "greedy_eval", "adaptive",
            "learnlr GreedyLR after each evaluation on val loss (PER_EVAL: window 1, patience 2, "
            "F 0.8)",
            _greedy_eval, fingerprint=_greedy_fingerprint,
        ),
        _spec(
            "greedy_eval_budget", "adaptive",
            "learnlr GreedyLR told the budget, deciding after each evaluation on val loss "
            "(BUDGET_PER_EVAL) with the training-loss brake (the HF / Lightning eval modes)",
            _greedy_eval_budget, fingerprint=_greedy_eval_budget_fingerprint,
        ),
        _spec(
            "hf_greedy", "adaptive",
            "transformers.GreedyLR with Trainer defaults, after each evaluation",
            _hf_greedy, requires=("transformers",),
        ),
        _spec("sgd_hd_group", "peer", "SGD-HD, one LR per parameter group (Baydin 2018)",
              _hd("SGDHD", "group"), optimizers=("sgd",)),
        _spec("sgd_hd_param", "peer", "SGD-HD, one LR per scalar parameter",
              _hd("SGDHD", "parameter"), optimizers=("sgd",)),
        _spec("adam_hd_group", "peer", "Adam-HD, one LR per parameter group (Baydin 2018)",
              _hd("AdamHD", "group"), optimizers=("adamw",)),
        _spec("adam_hd_param", "peer", "Adam-HD, one LR per scalar parameter",
              _hd("AdamHD", "parameter"), optimizers=("adamw",)),
        _spec("sls", "peer", "stochastic Armijo line search (Vaswani 2019), plain SGD", _sls,
              optimizers=("sgd",), uses_base_lr=False),
        _spec("schedulefree", "peer", "schedule-free SGD / AdamW (schedulefree package)",
              _schedulefree, optimizers=("sgd", "adamw"), requires=("schedulefree",)),
        _spec("prodigy", "peer", "Prodigy (prodigyopt), Adam-based, lr=1", _prodigy,
              optimizers=("adamw",), uses_base_lr=False, requires=("prodigyopt",)),
        _spec("dadapt", "peer", "D-Adaptation SGD / Adam / AdaGrad (dadaptation), lr=1",
              _dadapt, uses_base_lr=False, requires=("dadaptation",)),
    ]
}



def register_schedule(spec: ScheduleSpec, *, after: str | None = None) -> None:
    """Add ``spec`` to :data:`SCHEDULES` (how packages above the benchmark, such as
    :mod:`learnlr.rl`, contribute schedules without the benchmark importing them).

    ``after`` places it right after that entry (the registry's order is the report's order);
    re-registering a name replaces the entry in place.

    Raises:
        ValueError: ``after`` is not a registered schedule.
    """
    if spec.name in SCHEDULES or after is None:
        SCHEDULES[spec.name] = spec
        return
    if after not in SCHEDULES:
        raise ValueError(f"after must be a registered schedule, got {after!r}; "
                         f"valid: {sorted(SCHEDULES)}")
    entries = list(SCHEDULES.items())
    at = [n for n, _ in entries].index(after) + 1
    SCHEDULES.clear()
    SCHEDULES.update(entries[:at] + [(spec.name, spec)] + entries[at:])


# Providers (learnlr.rl's schedules, entry points) register here: after everything a provider
# imports from this module, before the tables derived from the registry below.
load_schedule_providers()

# Fixed schedules whose tuned runs define the steps-to-target target (issue 3).
FIXED_SCHEDULES: tuple[str, ...] = tuple(n for n, s in SCHEDULES.items() if s.kind == "fixed")

# Short names users may type that stand for several variants.
SCHEDULE_ALIASES: dict[str, tuple[str, ...]] = {
    "sgd_hd": ("sgd_hd_group", "sgd_hd_param"),
    "adam_hd": ("adam_hd_group", "adam_hd_param"),
    "hd": ("sgd_hd_group", "sgd_hd_param", "adam_hd_group", "adam_hd_param"),
    # Every learnlr GreedyLR variant: the report never counts one of them as GreedyLR's rival.
    "greedy": ("greedy_step", "greedy_reactive", "greedy_eval", "greedy_eval_budget"),
}


def expand_schedule_names(names: Iterable[str]) -> list[str]:
    """Expand aliases and check names; raises ValueError listing the valid names."""
    out: list[str] = []
    for name in names:
        for expanded in SCHEDULE_ALIASES.get(name, (name,)):
            if expanded not in SCHEDULES:
                valid = sorted(SCHEDULES) + sorted(SCHEDULE_ALIASES)
                raise ValueError(
                    f"schedule {name!r} is unknown; valid schedules: {', '.join(valid)}"
                )
            if expanded not in out:
                out.append(expanded)
    return out


def build_schedule(
    name: str,
    params: Iterable[torch.nn.Parameter],
    optimizer_name: str,
    *,
    base_lr: float,
    budget_steps: int,
    eval_every: int,
) -> tuple[Optimizer, TrainingHooks]:
    """Build the optimizer and hooks for schedule ``name`` in optimizer column ``optimizer_name``.

    Raises ValueError for an unknown name, an optimizer column the entry does not run in, or a
    non-positive LR / budget.
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    spec = SCHEDULES[name]
    if optimizer_name not in spec.optimizers:
        raise ValueError(
            f"optimizer {optimizer_name!r} is not a column of schedule {name!r}; "
            f"allowed: {list(spec.optimizers)}"
        )
    if not (math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a finite number > 0, got {base_lr!r}")
    if budget_steps < 1:
        raise ValueError(f"budget_steps must be >= 1, got {budget_steps!r}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every!r}")
    ctx = BuildContext(optimizer_name, float(base_lr), int(budget_steps), int(eval_every))
    hooks = spec.builder(list(params), ctx)
    return hooks.optimizer, hooks


def effective_lr(optimizer: Optimizer) -> float:
    """The step size the first parameter group actually used, for logging.

    Prodigy and D-Adaptation keep ``lr`` at 1 and scale it by their estimate ``d``; schedule-free
    keeps its warmed-up rate in ``scheduled_lr``; everyone else reports ``lr`` directly.
    """
    group = optimizer.param_groups[0]
    lr = group.get("scheduled_lr", group["lr"])
    lr = float(lr.mean()) if isinstance(lr, torch.Tensor) else float(lr)
    if "d" in group:
        lr *= float(group["d"])
    return lr

