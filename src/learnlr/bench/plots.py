"""The report's PNG plots: LR and validation-loss small multiples, performance profiles.

One colour per schedule everywhere (:func:`schedule_colour`), so a schedule is recognisable
from plot to plot; GreedyLR is drawn solid and thick, fixed schedules dashed, the rest dotted.
Figures come from :mod:`learnlr.plotting` (matplotlib's object API; never pyplot or
``matplotlib.use``) and are written by its ``save_figure``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from learnlr.bench.schedules import SCHEDULES
from learnlr.bench.store import ExperimentStore, Trajectory
from learnlr.bench.summary import GREEDY_SCHEDULES, R_MAX
from learnlr.plotting import new_figure, save_figure

PLOT_FILENAMES = ("lr_schedules.png", "loss_histories.png", "performance_profiles.png")

# matplotlib's tab20 without its pale halves, then the pale ones; GreedyLR takes the first two.
_PALETTE = (
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#ff9896", "#aec7e8", "#98df8a", "#ffbb78", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)


def schedule_colour(name: str) -> str:
    """The colour of ``name`` in every plot: GreedyLR first, then registry order."""
    order = [*GREEDY_SCHEDULES, *(s for s in SCHEDULES if s not in GREEDY_SCHEDULES)]
    index = order.index(name) if name in order else len(order) + sum(map(ord, name))
    return _PALETTE[index % len(_PALETTE)]


def _style(name: str) -> dict[str, Any]:
    kind = SCHEDULES[name].kind if name in SCHEDULES else "peer"
    greedy = name in GREEDY_SCHEDULES
    return {"color": schedule_colour(name), "lw": 2.2 if greedy else 1.2,
            "ls": "-" if greedy else ("--" if kind == "fixed" else ":")}


Panels = dict[tuple[str, str], dict[str, Trajectory]]


def seed0_panels(store: ExperimentStore, hashes: set[str]) -> dict[float, Panels]:
    """LR scale -> (workload, optimizer) -> schedule -> seed-0 trajectory, for every pair in
    ``hashes`` (LR-free peers, run once, appear on every track)."""
    by_scale: dict[float, Panels] = {}
    free: list[Trajectory] = []
    for cell in store.cells(hashes=hashes):
        c = cell.config
        if c["seed"] != 0:
            continue
        if c["schedule"] in SCHEDULES and not SCHEDULES[c["schedule"]].uses_base_lr:
            free.append(store.trajectory(cell.hash))
            continue
        panels = by_scale.setdefault(float(c.get("lr_scale", 1.0)), {})
        panels.setdefault((c["workload"], c["optimizer"]), {})[c["schedule"]] = \
            store.trajectory(cell.hash)
    for panels in by_scale.values() or [by_scale.setdefault(1.0, {})]:
        for t in free:
            panels.setdefault((t.config["workload"], t.config["optimizer"]), {})[
                t.config["schedule"]] = t
    return {scale: dict(sorted(p.items())) for scale, p in sorted(by_scale.items()) if p}


def track_plot_names(scale: float) -> tuple[str, str]:
    """The LR and val-loss plot files of one LR track (the tuned track keeps the plain names)."""
    if scale == 1.0:
        return PLOT_FILENAMES[0], PLOT_FILENAMES[1]
    return (f"lr_schedules_x{scale:g}.png", f"loss_histories_x{scale:g}.png")


def _grid(n: int, n_names: int) -> tuple[Any, list[Any], Any]:
    """``n`` panels, at most 4 a row, and a full-width row below them for the legend (an axes,
    so the layout leaves room for it)."""
    cols = min(4, n)
    rows = math.ceil(n / cols)
    legend_rows = math.ceil(n_names / _legend_columns(cols))
    fig, axes = new_figure(rows + 1, cols, figsize=(3.4 * cols, 2.6 * rows + 0.3 * legend_rows),
                           squeeze=False, height_ratios=[1] * rows + [0.12 * legend_rows])
    for ax in axes[-1]:
        ax.remove()
    legend_ax = fig.add_subplot(axes[0][0].get_gridspec()[-1, :])
    legend_ax.axis("off")
    flat = [ax for row in axes[:-1] for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n], legend_ax


def _legend_columns(panel_columns: int) -> int:
    return min(6, 2 * panel_columns)  # what fits under that many panels


def _legend(ax: Any, names: set[str], panel_columns: int) -> None:
    from matplotlib.lines import Line2D

    ordered = [s for s in dict.fromkeys((*GREEDY_SCHEDULES, *SCHEDULES)) if s in names]
    ordered += sorted(names - set(ordered))
    ax.legend([Line2D([], [], **_style(s)) for s in ordered], ordered, loc="center",
              fontsize=7, ncol=min(_legend_columns(panel_columns), len(ordered)), frameon=False)


def _small_multiples(panels: Panels, flat: set[str], title: str,
                     draw: Any, ylabel: str) -> Any:
    names = {name for runs in panels.values() for name in runs}
    fig, axes, legend_ax = _grid(len(panels), len(names))
    for ax, ((workload, optimizer), runs) in zip(axes, panels.items(), strict=True):
        for name in sorted(runs, key=lambda s: s in GREEDY_SCHEDULES):  # GreedyLR on top
            draw(ax, runs[name], _style(name))
        never = sorted(s for s, t in runs.items() if t.hash in flat)
        ax.set_title(f"{workload} / {optimizer}", fontsize=8)
        if never:
            ax.text(0.02, 0.02, textwrap.fill("LR never changed: " + ", ".join(never), 45),
                    fontsize=6, transform=ax.transAxes, color="#a00")
        ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=6)
        ax.set_xlabel("optimizer step", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
    fig.suptitle(title, fontsize=10)
    _legend(legend_ax, names, min(4, len(panels)))
    return fig


def _draw_lr(ax: Any, t: Trajectory, style: dict[str, Any]) -> None:
    ax.plot(t.steps, [math.nan if v is None else v for v in t.lr], **style)


def _draw_val(ax: Any, t: Trajectory, style: dict[str, Any]) -> None:
    ax.plot([e["step"] for e in t.evals],
            [math.nan if e["val_loss"] is None else e["val_loss"] for e in t.evals],
            marker="o", ms=2, **style)


def _profiles(profiles: Mapping[str, Any]) -> Any:
    fig, axes = new_figure(1, 2, figsize=(11, 4.5))
    for ax, (kind, title) in zip(
        axes, (("steps_to_target", "steps-to-target ratio"), ("final_loss", "final val loss ratio")),
        strict=True,
    ):
        for name in profiles[kind]:
            p = profiles[kind][name]
            ax.step(p["tau"], p["rho"], where="post", label=f"{name} ({p['area']:.2f})",
                    **_style(name))
        ax.set_xlim(1, R_MAX)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("tau (ratio to the best schedule)")
        ax.set_ylabel("fraction of (workload, optimizer, seed) groups")
        ax.set_title(f"performance profile: {title}")
        ax.legend(fontsize=6, ncol=2)
    return fig


def write_plots(store: ExperimentStore, hashes: set[str], summary: Mapping[str, Any],
                flat: set[str], out_dir: Path) -> list[Path]:
    """LR and validation-loss small multiples (one panel per (workload, optimizer), seed 0) and
    the performance profiles; ``flat`` holds the hashes of cells whose LR never changed."""
    written = []
    for scale, panels in seed0_panels(store, hashes).items():
        track = "" if scale == 1.0 else f", base LR x{scale:g}"
        lr_name, val_name = track_plot_names(scale)
        written.append(save_figure(_small_multiples(
            panels, flat, f"LR each schedule produced (seed 0{track})", _draw_lr,
            "learning rate"), out_dir / lr_name))
        written.append(save_figure(_small_multiples(
            panels, flat, f"validation loss (seed 0{track})", _draw_val, "val loss"),
            out_dir / val_name))
    written.append(save_figure(_profiles(summary["performance_profiles"]),
                               out_dir / PLOT_FILENAMES[2]))
    return written
