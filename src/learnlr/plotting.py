"""The one figure helper of the package: build figures with matplotlib's object API and save them.

Figures come from :class:`matplotlib.figure.Figure`, not ``pyplot``: they are never registered
with pyplot, need no display, and library code never calls ``matplotlib.use`` (which would switch
the caller's backend, e.g. inside a notebook). Needs ``matplotlib`` (the ``learnlr[bench]`` extra).

Example::

    fig, ax = new_figure(figsize=(6, 4))
    ax.plot([1, 2, 3])
    save_figure(fig, "out/curve.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["new_figure", "save_figure"]


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (7, 5),
               **subplots: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``pyplot.subplots``, without touching pyplot or the backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out and write ``fig`` as an image (creating the folder); return the path."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
