"""Plots of learned vs hand-made schedules (matplotlib's object API: no display needed)."""

from __future__ import annotations

from pathlib import Path

from learnlr.plotting import new_figure, save_figure
from learnlr.rl.evaluation import InstanceResult

__all__ = ["plot_instance", "plot_ratio_histogram"]


def plot_instance(result: InstanceResult, path: str | Path) -> Path:
    """Loss (top) and LR relative to the stability bound (bottom) per schedule family."""
    fig, (ax_loss, ax_lr) = new_figure(2, 1, figsize=(7, 6), sharex=True)
    for family, run in sorted(result.runs.items()):
        ax_loss.semilogy(run.losses, label=f"{family} ({result.steps[family]} steps)")
        ax_lr.semilogy([lr / b for lr, b in zip(run.lrs, run.bounds, strict=True)], label=family)
    ax_loss.axhline(result.target, color="k", ls=":", lw=1, label="target")
    ax_loss.set_ylabel("loss 0.5||X - WH||^2")
    ax_loss.set_title(result.name)
    ax_loss.legend(fontsize=8)
    ax_lr.set_ylabel("lr / stability bound")
    ax_lr.set_xlabel("SGD step")
    return save_figure(fig, path)


def plot_ratio_histogram(results: list[InstanceResult], path: str | Path,
                         goal: float = 0.7) -> Path:
    """Histogram of steps(rl) / steps(best step decay) over instances."""
    ratios = [r.steps["rl"] / r.steps["step"] for r in results]
    fig, ax = new_figure(figsize=(6, 3.5))
    ax.hist(ratios, bins=20, color="tab:blue")
    ax.axvline(goal, color="tab:red", ls="--", label=f"goal {goal}x")
    ax.set_xlabel("steps to target: learned / best step decay")
    ax.set_ylabel("instances")
    ax.legend()
    return save_figure(fig, path)
