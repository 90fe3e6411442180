"""Argument checks shared by the optimizer-level peers (SLS, SGD-HD, Adam-HD); not public."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch


def as_real(value: object) -> float | None:
    """``value`` as a float if it is a real number, else None.

    Accepts what torch's own optimizers accept for ``lr``: any ``numbers.Real`` (numpy scalars
    included) and 0-d real tensors. Bools are numbers.Real too, but ``True`` as a step size or a
    decay is a mistake, so they are rejected.
    """
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool or value.is_complex():
            return None
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def check_real(name: str, value: object, valid: Callable[[float], bool], expected: str) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is finite, real and ``valid``."""
    as_float = as_real(value)
    if as_float is None or not math.isfinite(as_float) or not valid(as_float):
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}")
    return as_float


def check_int(
    name: str, value: object, minimum: int, expected: str, maximum: int | None = None
) -> int:
    """``value`` as an int; ValueError unless it is an integer in ``[minimum, maximum]``.

    Bools and floats (even ``1.0``) are rejected: they are not counts or option numbers.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}")
    return int(value)
