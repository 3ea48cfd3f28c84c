"""What the driver shows: a progress bar per stage, a table after each round, and media for W&B."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from improve.run_state import STAGES, RunState
from replay import ReplayStore

VIDEO_HEIGHT = 192


class StageTimer:
    seconds: float = 0.0


@contextlib.contextmanager
def stage_timer(console: Console, round_index: int, stage: str) -> Iterator[StageTimer]:
    timer = StageTimer()
    start = time.monotonic()
    console.print(f"[dim]round {round_index}[/] {stage} ...")
    yield timer
    timer.seconds = time.monotonic() - start
    console.print(f"[dim]round {round_index}[/] {stage} [green]done[/] in {timer.seconds:.1f} s")


@contextlib.contextmanager
def progress_bar(console: Console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar that the caller moves to an absolute count (episodes committed so far)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=min(done, total))


def round_table(state: RunState) -> Table:
    """One row per finished round: the numbers a lab reads in the morning (stage times: ``stage_table``)."""
    table = Table(title=f"vivarl run {state.run_name}")
    # Short headers keep the table whole in an 80-column log; the README explains each column.
    columns = (
        "round",
        "eval\nsucc",
        "coll\nsucc",
        "succ/h\neval",
        "mean\nlen",
        "interv\nrate",
        "pos\nfrac",
        "policy",
        "value\nVOC",
        "wall\nmin",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for key in sorted(state.rounds, key=int):
        outputs = state.rounds[key]
        m = outputs.get("metrics")
        if not m:
            continue
        seconds = state.stage_seconds.get(key, {})
        table.add_row(
            key,
            _pct(m.get("eval/success_rate")),
            _pct(m.get("collect/success_rate")),
            f"{m.get('eval/successes_per_hour', 0):.0f}",
            f"{m.get('eval/mean_length', 0):.0f}",
            _pct(m.get("collect/intervention_rate")),
            _pct(m.get("labels/positive_fraction")),
            str(outputs.get("policy_version", "-")),
            f"{m['value/voc']:.2f}" if m.get("value/voc") == m.get("value/voc") and "value/voc" in m else "-",
            f"{sum(seconds.values()) / 60:.1f}",
        )
    return table


def stage_table(state: RunState) -> Table:
    """Wall time of every stage of every round, in seconds."""
    table = Table(title="stage wall time (s)")
    table.add_column("round", justify="right")
    for stage in STAGES:
        table.add_column(stage.replace("_", "\n"), justify="right")
    for key in sorted(state.stage_seconds, key=int):
        seconds = state.stage_seconds[key]
        table.add_row(key, *(f"{seconds[s]:.0f}" if s in seconds else "-" for s in STAGES))
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0%}"


def tile_cameras(images: dict[str, np.ndarray], names: tuple[str, ...] | list[str]) -> np.ndarray:
    """All cameras side by side, enlarged by an integer factor so small frames stay sharp in a video."""
    row = np.concatenate([images[name] for name in names], axis=1)
    scale = max(1, VIDEO_HEIGHT // row.shape[0])
    return np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)


def round_media(
    store: ReplayStore, round_index: int, outputs: dict[str, Any], media_dir: Path, fps: float
) -> dict[str, Any]:
    """An evaluation episode as an mp4, value curves against ground-truth progress, and the advantages."""
    import imageio.v2 as imageio

    from improve.collection import committed_episodes

    media: dict[str, Any] = {}
    evals = committed_episodes(store, round_index, "eval")
    if evals:
        episode = store.read_episode(evals[0].meta.episode_id)
        names = store.schema.camera_names
        frames = [episode[f"images/{name}"] for name in names]
        tiled = [
            tile_cameras({n: f[t] for n, f in zip(names, frames, strict=True)}, names)
            for t in range(len(frames[0]))
        ]
        media_dir.mkdir(parents=True, exist_ok=True)
        media["video"] = media_dir / f"round{round_index:03d}_eval.mp4"
        imageio.mimwrite(media["video"], tiled, fps=fps, macro_block_size=1)
    value_key, run = outputs.get("value_key"), outputs.get("labelling_run")
    trained = committed_episodes(store, round_index, outputs.get("purpose", "rollout"))
    if value_key and trained:
        from valuemodel.plots import ValueCurve, plot_value_curves
        from valuemodel.targets import from_model_range

        curves = []
        for record in trained[:6]:
            values = store.read_derived("value", value_key, record.meta.episode_id)
            progress = store.read_episode(record.meta.episode_id, columns=["progress"])["progress"]
            if values is not None:
                curves.append(
                    ValueCurve(
                        pred=from_model_range(values) + 1.0,
                        gt=progress,
                        title=f"{record.meta.outcome.value} {record.meta.episode_id[-6:]}",
                    )
                )
        if curves:
            media_dir.mkdir(parents=True, exist_ok=True)
            path = media_dir / f"round{round_index:03d}_values.png"
            media["plots"] = {"value/curves": plot_value_curves(curves, path)}
    if run:
        advantages = [store.read_derived("advantage", run, r.meta.episode_id) for r in trained]
        media["advantages"] = np.concatenate([a for a in advantages if a is not None] or [np.zeros(0)])
    return media


def value_metrics(store: ReplayStore, records: list[Any], value_key: str | None) -> dict[str, float]:
    """VOC on successful episodes and Pearson against ground-truth progress, averaged over episodes."""
    if not value_key:
        return {}
    from valuemodel.metrics import pearson, voc

    vocs, pearsons = [], []
    for record in records:
        values = store.read_derived("value", value_key, record.meta.episode_id)
        if values is None or len(values) < 3:
            continue
        if record.meta.outcome.value == "success":
            vocs.append(voc(values))
        if record.meta.has_ground_truth:
            progress = store.read_episode(record.meta.episode_id, columns=["progress"])["progress"]
            pearsons.append(pearson(values, progress))
    out = {}
    if vocs:
        out["value/voc"] = float(np.nanmean(vocs))
    if pearsons:
        out["value/pearson_progress"] = float(np.nanmean(pearsons))
    return out
