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

from improve.evaluation import paired_comparison, success_interval
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


def evaluation_metrics(state: RunState, r: int) -> dict[str, float]:
    """Round ``r``'s evaluation on the fixed seeds: success with its 95% interval, and paired comparisons with
    round 0 and with the previous round on the same seeds."""
    outcomes = state.round_outputs(r).get("eval_outcomes") or {}
    if not outcomes:
        return {}
    successes, episodes = sum(outcomes.values()), len(outcomes)
    low, high = success_interval(successes, episodes)
    metrics = {
        "eval/fixed_seed_success": successes / episodes,
        "eval/success_ci_low": low,
        "eval/success_ci_high": high,
    }
    for name, reference_round in (("vs_round0", 0), ("vs_previous", r - 1)):
        reference = state.round_outputs(reference_round).get("eval_outcomes") if r > 0 else None
        if reference:
            c = paired_comparison(reference, outcomes)
            metrics |= {
                f"eval/{name}_diff": c.difference,
                f"eval/{name}_ci_low": c.ci_low,
                f"eval/{name}_ci_high": c.ci_high,
                f"eval/{name}_p": c.p_value,
            }
    gate = state.round_outputs(r).get("gate") or {}
    if gate:
        metrics["gate/promoted"] = float(bool(gate.get("promoted")))
    return metrics


def round_table(state: RunState) -> Table:
    """One row per finished round: the numbers a lab reads in the morning (stage times: ``stage_table``)."""
    table = Table(title=f"vivarl run {state.run_name}")
    # Short headers keep the table inside a 100-column log; the README explains each column.
    columns = (
        "round",
        "eval succ\n[95% CI]",
        "vs r0\n(p)",
        "vs prev\n(p)",
        "succ/h\neval",
        "interv\nrate",
        "value\nshapeR2/VOC",
        "policy",
        "arms\nout",
        "arm\nuse",
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
            _rate_with_interval(m),
            _paired(m, "vs_round0"),
            _paired(m, "vs_previous"),
            f"{m.get('eval/successes_per_hour', 0):.0f}",
            _pct(m.get("collect/intervention_rate")) if outputs.get("purpose") == "rollout" else "-",
            _value_cell(outputs),
            _policy_cell(outputs),
            ",".join(sorted(outputs.get("arms_set_aside", {}))) or "-",
            _pct(m.get("arms/utilisation_mean")),
            f"{sum(seconds.values()) / 60:.1f}",
        )
    return table


def _rate_with_interval(m: dict[str, float]) -> str:
    if "eval/fixed_seed_success" not in m:
        return _pct(m.get("eval/success_rate"))
    return (
        f"{m['eval/fixed_seed_success']:.0%} "
        f"[{m['eval/success_ci_low'] * 100:.0f}-{m['eval/success_ci_high'] * 100:.0f}]"
    )


def _paired(m: dict[str, float], name: str) -> str:
    if f"eval/{name}_diff" not in m:
        return "-"
    return f"{m[f'eval/{name}_diff'] * 100:+.0f} ({m[f'eval/{name}_p']:.2f})"


def _value_cell(outputs: dict[str, Any]) -> str:
    quality = outputs.get("value_quality")
    if not quality:
        return "progress" if outputs.get("labelling_run", "").endswith("-progress") else "-"
    cell = f"{quality['shape_r2']:.2f}/{quality['voc']:.2f}"
    if not quality.get("passed"):
        used = outputs.get("value_used")
        cell += f" fail→{'v' + str(used) if used is not None else 'outcome'}"
    return cell


def _policy_cell(outputs: dict[str, Any]) -> str:
    gate = outputs.get("gate") or {}
    deployed = outputs.get("deployed", "-")
    if gate and not gate.get("promoted"):
        return f"kept {deployed}"
    return str(deployed)


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
    store: ReplayStore,
    round_index: int,
    outputs: dict[str, Any],
    media_dir: Path,
    fps: float,
    value_key_format: str = "",
    holdout_fraction: float = 0.0,
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
    run = outputs.get("labelling_run")
    trained = committed_episodes(store, round_index, outputs.get("purpose", "rollout"))
    version = outputs.get("value_version")
    if version is not None and value_key_format:
        from learners.value_quality import held_out_episodes
        from valuemodel.plots import ValueCurve, plot_value_curves
        from valuemodel.targets import from_model_range

        # Curves of the round's new version on episodes it never trained on, successes and failures alike.
        value_key = value_key_format.format(version=version)
        valued = store.derived_episode_ids("value", value_key)
        held_out = [
            r
            for r in held_out_episodes(store, holdout_fraction)
            if r.meta.has_ground_truth and r.meta.episode_id in valued
        ]
        chosen = [r for r in held_out if r.meta.outcome.value == "success"][:3]
        chosen += [r for r in held_out if r.meta.outcome.value != "success"][: 6 - len(chosen)]
        curves = []
        for record in chosen:
            values = store.read_derived("value", value_key, record.meta.episode_id)
            progress = store.read_episode(record.meta.episode_id, columns=["progress"])["progress"]
            if values is not None:
                curves.append(
                    ValueCurve(
                        pred=from_model_range(values) + 1.0,
                        gt=progress,
                        title=f"{record.meta.purpose} {record.meta.outcome.value} {record.meta.episode_id[-6:]}",
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
