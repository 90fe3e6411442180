"""The budget envelope: warmup, stable phase, final anneal, as a pure function of the step.

A budget-aware schedule multiplies the feedback controller's LR by this envelope::

    lr(t) = greedy_lr(t) * envelope(t)

``envelope`` rises linearly over ``warmup_steps`` (from ``1/warmup_steps`` at the first step to 1),
stays at 1 through the stable phase, and anneals over the last ``anneal_steps`` steps to about 0
at the last step (``shape``: ``"1-sqrt"`` (default; Hagele et al. 2024 found it beats linear),
``"linear"`` or ``"cosine"``). Past ``total_steps`` it holds its last value: never negative,
never raising. The same function, with ``xp=jax.numpy``, traces under ``jax.jit`` (no Python
branching on the step), so torch, optax, the HF callback, Lightning and the benchmark's ``wsd``
baseline all get the same numbers.

>>> b = Budget(total_steps=10, warmup_steps=2, anneal_steps=4)
>>> [round(b.multiplier(t), 3) for t in range(11)]
[0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.553, 0.368, 0.225, 0.106, 0.106]
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

SHAPES = ("1-sqrt", "linear", "cosine")

DEFAULT_ANNEAL_FRACTION = 0.2
"""WSD's cooldown (Hagele et al. 2024: 10-20 % of the steps suffices; longer gives no gain)."""


def check_total_steps(total_steps: object, *, steps_taken: int = 0) -> int:
    """``total_steps`` as an int >= 1 (and >= ``steps_taken``), or a ValueError naming it."""
    try:
        value = operator.index(total_steps) if not isinstance(total_steps, bool) else None
    except TypeError:
        value = None
    if value is None or value < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    if value < steps_taken:
        raise ValueError(
            f"total_steps={value} is fewer than the {steps_taken} steps already taken; "
            "pass a total_steps >= the steps taken so far"
        )
    return value


def anneal_steps_for(total_steps: int, anneal_fraction: float) -> int:
    """Steps in the final anneal: ``round(anneal_fraction * total_steps)``, at least 1 if > 0."""
    if not isinstance(anneal_fraction, (int, float)) or isinstance(anneal_fraction, bool) or not (
        0.0 <= anneal_fraction <= 1.0
    ):
        raise ValueError(f"anneal_fraction must be a number in [0, 1], got {anneal_fraction!r}")
    if anneal_fraction == 0.0:
        return 0
    return max(1, round(anneal_fraction * total_steps))


class _PyMath:
    """The four array functions :func:`envelope` needs, for plain Python floats."""

    minimum = staticmethod(min)
    maximum = staticmethod(max)
    sqrt = staticmethod(math.sqrt)
    cos = staticmethod(math.cos)


def envelope(
    step: Any,
    total_steps: int,
    warmup_steps: int = 0,
    anneal_steps: int = 0,
    shape: str = "1-sqrt",
    xp: Any = None,
) -> Any:
    """LR multiplier in [0, 1] for the update made at optimizer step ``step`` (0-based).

    ``xp`` is the array namespace (``None``: Python floats; ``jax.numpy`` under jit). The
    arguments other than ``step`` are static Python values.
    """
    xp = _PyMath if xp is None else xp
    t = xp.minimum(xp.maximum(step, 0), total_steps - 1) * 1.0  # past the budget: hold
    warm = xp.minimum((t + 1.0) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    if anneal_steps <= 0:
        return warm * 1.0
    start = total_steps - anneal_steps
    # (t - start + 1) / (anneal_steps + 1): the first anneal step is already below 1 and the last
    # is 1 - sqrt(A / (A + 1)) ~ 1 / (2A): about 0, yet the final update still moves.
    progress = xp.minimum(xp.maximum((t - start + 1.0) / (anneal_steps + 1.0), 0.0), 1.0)
    if shape == "1-sqrt":
        decay = 1.0 - xp.sqrt(progress)
    elif shape == "linear":
        decay = 1.0 - progress
    elif shape == "cosine":
        decay = 0.5 * (1.0 + xp.cos(math.pi * progress))
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return warm * decay


@dataclass(frozen=True)
class Budget:
    """A step budget and its envelope, validated once."""

    total_steps: int
    warmup_steps: int = 0
    anneal_steps: int = 0
    shape: str = "1-sqrt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_steps", check_total_steps(self.total_steps))
        for name in ("warmup_steps", "anneal_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.warmup_steps + self.anneal_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) + anneal_steps ({self.anneal_steps}) must be "
                f"<= total_steps ({self.total_steps})"
            )
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")

    @classmethod
    def from_fraction(
        cls,
        total_steps: int,
        warmup_steps: int = 0,
        anneal_fraction: float = DEFAULT_ANNEAL_FRACTION,
        shape: str = "1-sqrt",
    ) -> Budget:
        total = check_total_steps(total_steps)
        anneal = anneal_steps_for(total, anneal_fraction)
        room = total - anneal
        if isinstance(warmup_steps, int) and not isinstance(warmup_steps, bool) and (
            warmup_steps > room
        ):
            # Before, the anneal was silently cut to fit (none at all with warmup_steps ==
            # total_steps): a run that ended at the full LR although it asked for an anneal.
            raise ValueError(
                f"warmup_steps must be <= total_steps - the anneal's {anneal} steps "
                f"({total} * anneal_fraction {anneal_fraction}) = {room}, got {warmup_steps}"
            )
        return cls(total, warmup_steps, anneal, shape)

    @property
    def anneal_start(self) -> int:
        """First step of the final anneal."""
        return self.total_steps - self.anneal_steps

    def phase(self, step: int) -> str:
        """``"warmup"``, ``"stable"`` or ``"anneal"`` for the update made at ``step``."""
        if step < self.warmup_steps:
            return "warmup"
        if step >= self.anneal_start and self.anneal_steps > 0:
            return "anneal"
        return "stable"

    def multiplier(self, step: int, xp: Any = None) -> Any:
        """:func:`envelope` at ``step``."""
        return envelope(step, self.total_steps, self.warmup_steps, self.anneal_steps, self.shape, xp)
