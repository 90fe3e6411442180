"""The one divergence rule of every training loop that stops a run early (the NMF solver, the
RL environments): a loss that is non-finite or above :data:`DIVERGENCE_FACTOR` times the run's
first loss. Pure Python, no torch.

Example:
    >>> has_diverged(2e3, 1.0), has_diverged(float("nan"), 1.0), has_diverged(5.0, 1.0)
    (True, True, False)
"""

from __future__ import annotations

import math

__all__ = ["DIVERGENCE_FACTOR", "has_diverged"]

DIVERGENCE_FACTOR = 1e3
"""A loss this many times above the run's first loss counts as diverged (far beyond any noise
spike of a working run, and reached within a few steps by a run that is blowing up)."""


def has_diverged(loss: float, first_loss: float) -> bool:
    """True when ``loss`` is non-finite or above ``DIVERGENCE_FACTOR x first_loss``.

    A first loss of 0 counts as 1e-12, so a perfectly fitted start does not make every later
    loss a divergence.
    """
    return not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss, 1e-12)
