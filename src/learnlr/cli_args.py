"""argparse ``type=`` functions shared by every ``learnlr`` sub-command.

argparse prefixes the option's name to the message (``argument --steps: expected an integer
>= 1, got '0'``) and exits with code 2. Kept apart from :mod:`learnlr.cli`, which imports the
sub-command modules, so those modules never import the CLI that loads them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["folder_problem", "output_file", "output_folder", "positive_float", "positive_int",
           "seed_int"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in ``[0, 2**32)``, the range of :func:`learnlr.nmf.problems.check_seed`
    (numpy's global seed, which PPO training sets, accepts no more)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}"
                                         ) from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {value}")
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


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written into (its nearest existing ancestor is a file
    or not writable), or None. Checked before any work, so a long run never ends in an error
    about where to write its result."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{str(parent)!r} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"folder {str(parent)!r} is not writable"
            return None
    return None


def nonempty_path(text: str) -> str:
    """A path given as an empty string: Path("") is the current folder, which nobody means."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a folder or file")
    return text


def output_folder(text: str) -> Path:
    """A folder the command may create and write into."""
    path = Path(nonempty_path(text))
    problem = folder_problem(path)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return path


def output_file(text: str) -> Path:
    """A file path (or path stem) the command may write: not a folder, in a writable folder."""
    path = Path(nonempty_path(text))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    problem = folder_problem(path.parent)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return path
