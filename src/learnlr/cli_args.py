"""argparse ``type=`` functions shared by every ``learnlr`` sub-command.

argparse prefixes the option's name to the message (``argument --steps: expected an integer
>= 1, got '0'``) and exits with code 2. Kept apart from :mod:`learnlr.cli`, which imports the
sub-command modules, so those modules never import the CLI that loads them.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_float", "positive_int"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (``nan`` and ``-inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value
