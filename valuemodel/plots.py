"""Value-curve plots (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ValueCurve:
    """One episode to draw: predictions, optional ground truth (same units), a title."""

    pred: np.ndarray
    gt: np.ndarray | None = None
    title: str = ""


def plot_value_curves(
    curves: Sequence[ValueCurve], path: str | Path, columns: int = 3, ylabel: str = "value"
) -> Path:
    """Draw each episode's predicted curve with its ground truth overlaid, one panel each, and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("nothing to plot: no curves given")
    columns = max(1, min(columns, len(curves)))
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, curve in zip(axes.flat, curves, strict=False):
        ax.plot(np.asarray(curve.pred), label="predicted", color="tab:blue")
        if curve.gt is not None:
            ax.plot(np.asarray(curve.gt), label="ground truth", color="black", linestyle="--")
        ax.set_title(curve.title, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def plot_episode_value(
    value: np.ndarray,
    progress: np.ndarray | None,
    title: str,
    path: str | Path,
    value_range: tuple[float, float],
) -> Path:
    """One episode at the model's own scale: the value on the left axis (fixed to ``value_range``, so the level,
    a failure penalty included, can be read and compared across episodes) and ground-truth progress on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.asarray(value), color="tab:blue", label="predicted value")
    ax.set_ylim(*value_range)
    ax.set_xlabel("frame")
    ax.set_ylabel("value (model range)", color="tab:blue")
    ax.grid(alpha=0.3)
    if progress is not None:
        twin = ax.twinx()
        twin.plot(np.asarray(progress), color="black", linestyle="--", label="ground-truth progress")
        twin.set_ylim(-0.02, 1.02)
        twin.set_ylabel("progress")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=80)


def save_figure(fig: Any, path: str | Path, dpi: int) -> Path:
    """Lay out, write (creating the folder) and close a figure, so long evaluations do not accumulate figures."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
