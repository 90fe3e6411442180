"""The report's PNG plots: LR and validation-loss small multiples, performance profiles.

One colour per schedule everywhere (:func:`schedule_colour`), so a schedule is recognisable
from plot to plot; GreedyLR is drawn solid and thick, fixed schedules dashed, the rest dotted.
Figures use matplotlib's object API (never pyplot or ``matplotlib.use``, which would switch a
caller's backend); every plot goes through :func:`save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from learnlr.bench.schedules import SCHEDULES
from learnlr.bench.store import ExperimentStore, Trajectory
from learnlr.bench.summary import GREEDY_SCHEDULES, R_MAX

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


def _figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig``; ``bbox_inches="tight"`` keeps the legend below the panels in the image."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


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


def _grid(n: int) -> tuple[Any, list[Any]]:
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = _figure(rows, cols, figsize=(3.4 * cols, 2.6 * rows))
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(fig: Any, names: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    ordered = [s for s in (*GREEDY_SCHEDULES, *SCHEDULES) if s in names]
    ordered += sorted(set(names) - set(ordered))
    handles = [Line2D([], [], **_style(s)) for s in dict.fromkeys(ordered)]
    fig.legend(handles, list(dict.fromkeys(ordered)), loc="lower center", fontsize=7,
               ncol=min(6, len(handles)), bbox_to_anchor=(0.5, -0.02), frameon=False)


def _small_multiples(panels: Panels, flat: set[str], title: str,
                     draw: Any, ylabel: str) -> Any:
    fig, axes = _grid(len(panels))
    names: set[str] = set()
    for ax, ((workload, optimizer), runs) in zip(axes, panels.items(), strict=True):
        for name in sorted(runs, key=lambda s: s in GREEDY_SCHEDULES):  # GreedyLR on top
            draw(ax, runs[name], _style(name))
            names.add(name)
        never = sorted(s for s, t in runs.items() if t.hash in flat)
        ax.set_title(f"{workload} / {optimizer}", fontsize=8)
        if never:
            ax.text(0.02, 0.02, "LR never changed: " + ", ".join(never), fontsize=6,
                    transform=ax.transAxes, color="#a00")
        ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=6)
        ax.set_xlabel("optimizer step", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _legend(fig, sorted(names))
    return fig


def _draw_lr(ax: Any, t: Trajectory, style: dict[str, Any]) -> None:
    ax.plot(t.steps, [math.nan if v is None else v for v in t.lr], **style)


def _draw_val(ax: Any, t: Trajectory, style: dict[str, Any]) -> None:
    ax.plot([e["step"] for e in t.evals],
            [math.nan if e["val_loss"] is None else e["val_loss"] for e in t.evals],
            marker="o", ms=2, **style)


def _profiles(profiles: Mapping[str, Any]) -> Any:
    fig, axes = _figure(1, 2, figsize=(11, 4.5))
    for ax, (kind, title) in zip(
        axes[0], (("steps_to_target", "steps-to-target ratio"), ("final_loss", "final val loss ratio")),
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
    fig.tight_layout()
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
