"""``vivarl-eval-value``: evaluate any value checkpoint on any replay store.

    vivarl-eval-value --checkpoint runs/value/v000003 --store runs/replay --out eval/v3 [--tags tags.json]

Predicts every step of every committed episode (or reads a stored value column with ``--label-key``), pairs the
curves with the store's ground-truth progress/stage where it has them, and writes ``metrics.md`` (table),
``metrics.json`` (summary and per-episode rows), ``value_curves.png`` (an overview grid) and one PNG per episode
at the model's value scale in ``episodes/`` (``--no-episode-plots`` skips them) into ``--out``
(``valuemodel.evaluate``).
``--tags`` is a JSON object episode id -> kind or list of kinds (expert, hesitation, retry, failure), e.g. the
scripted expert's fired knobs; an episode it leaves out takes its kinds from the tags recorded with it (the
simulated expert's pauses and retries, kept by the actors), and one without those from outcome and ground truth.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learners.value_data import LatentCache, ValueDataStats, episode_predictor
from learners.value_learner import resolve_device, robot_mismatches
from replay import Outcome, ReplayStore
from valuemodel.base import CONFIG_FILE
from valuemodel.checkpoint import load_checkpoint, load_norm_stats, resolve_checkpoint
from valuemodel.config import ValueModelConfig
from valuemodel.evaluate import EPISODE_KINDS, EpisodeCurve, EventSettings, evaluate_curves

log = logging.getLogger(__name__)


def read_tags(path: str | Path | None) -> dict[str, tuple[str, ...]]:
    if path is None:
        return {}
    raw = json.loads(Path(path).read_text())
    tags = {str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in raw.items()}
    unknown = sorted({k for kinds in tags.values() for k in kinds} - set(EPISODE_KINDS))
    if unknown:
        raise ValueError(f"unknown episode kinds {unknown} in {path}; use {list(EPISODE_KINDS)}")
    return tags


# Recorded episode tags (``actors.collect`` keeps the simulated expert's event kinds) that name an evaluation kind.
TAG_KINDS = {"pause": "hesitation", "retry": "retry"}


def kinds_from_tags(tags: Sequence[str], success: bool | None) -> tuple[str, ...]:
    """Evaluation kinds from an episode's recorded tags (``replay.event_tags``)."""
    kinds = ["failure"] if success is False else []
    kinds += [kind for tag, kind in TAG_KINDS.items() if tag in tags]
    return tuple(kinds) or (("expert",) if success else ())


def episode_curves(
    store: ReplayStore,
    values_of: Any,
    episode_ids: Sequence[str],
    tags: dict[str, tuple[str, ...]] | None = None,
) -> list[EpisodeCurve]:
    """Curves of ``episode_ids``: ``values_of(episode_id)`` predictions with the store's ground truth.

    An episode's kinds are ``tags``' entry for it, else its recorded tags' (``kinds_from_tags``), else empty
    (inferred from outcome and ground truth by ``valuemodel.evaluate.infer_kinds``, which cannot see pauses)."""
    tags = tags or {}
    curves = []
    for episode_id in episode_ids:
        meta = store.record(episode_id).meta
        columns = store.read_episode(episode_id, ["progress", "stage"])
        progress = columns["progress"].astype(np.float64)
        stage = columns["stage"].astype(np.int64)
        outcome = {Outcome.SUCCESS: True, Outcome.FAILURE: False}.get(meta.outcome)
        curves.append(
            EpisodeCurve(
                episode_id=episode_id,
                pred=np.asarray(values_of(episode_id), dtype=np.float64),
                progress=progress if np.isfinite(progress).all() else None,
                stage=stage if (stage >= 0).all() else None,
                success=outcome,
                kinds=tags.get(episode_id) or (kinds_from_tags(meta.tags, outcome) if meta.tags else ()),
            )
        )
    return curves


def check_checkpoint_fits_store(
    folder: Path, model_config: ValueModelConfig, stats: ValueDataStats, store: ReplayStore,
    episode_ids: Sequence[str],
) -> None:  # fmt: skip
    """Refuse, before predicting anything, a store whose robot or tasks the checkpoint was not trained for."""
    problems = robot_mismatches(model_config, store)
    tasks = sorted({store.record(e).meta.task for e in episode_ids} - set(stats.task_names))
    if tasks:
        problems.append(f"its episodes' tasks {tasks} are not among the model's {stats.task_names}")
    if problems:
        raise ValueError(
            f"checkpoint {folder} cannot be evaluated on {store.location.url}: {'; '.join(problems)}. Evaluate it "
            "on a store recorded by the robot and tasks it was trained on, or train a value model on this store"
        )


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    store: ReplayStore,
    out_dir: str | Path,
    *,
    name: str | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
    label_key: str | None = None,
    max_episodes: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    settings: EventSettings | None = None,
    episode_plots: bool = False,
) -> dict[str, Any]:
    """Evaluate one checkpoint (a version folder or a root: its latest version) on ``store``, or with
    ``label_key`` the value column a checkpoint wrote into it (no checkpoint needed); returns the report.
    ``episode_plots`` also draws every episode on its own (``valuemodel.evaluate.evaluate_curves``)."""
    episode_ids = store.episode_ids()[:max_episodes]
    if label_key is not None:
        default_name = label_key
        values_of = lambda episode_id: store.read_derived("value", label_key, episode_id)  # noqa: E731
        missing = [e for e in episode_ids if store.read_derived("value", label_key, e) is None]
        if missing:
            raise KeyError(f"{len(missing)} episodes lack value column {label_key!r}, e.g. {missing[:3]}")
    else:
        if checkpoint is None:
            raise ValueError("evaluate_checkpoint needs a checkpoint, or a label_key naming stored values")
        folder = resolve_checkpoint(checkpoint)
        default_name = f"{folder.parent.name}/{folder.name}"
        stats = ValueDataStats.from_dict(load_norm_stats(folder))
        # Checked before the weights are read: a 5B model takes minutes to load.
        check_checkpoint_fits_store(
            folder, ValueModelConfig.load_json(folder / CONFIG_FILE), stats, store, episode_ids
        )
        model = load_checkpoint(folder, device=resolve_device(device)).eval()
        cache = None if model.config.kind == "static" else LatentCache(max_frames=500_000)
        values_of = episode_predictor(store, model, stats, batch_size=batch_size, cache=cache)
    curves = episode_curves(store, values_of, episode_ids, tags)
    return evaluate_curves(
        curves, out_dir, name=name or default_name, settings=settings, episode_plots=episode_plots
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vivarl-eval-value", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", default=None, help="version folder, or checkpoint root (latest version)"
    )
    parser.add_argument("--store", required=True, help="replay store URL")
    parser.add_argument("--out", required=True, help="folder for metrics.md, metrics.json, value_curves.png")
    parser.add_argument("--name", default=None, help="model name in the table (default: root/version)")
    parser.add_argument(
        "--tags", default=None, help="JSON: episode id -> kind(s) (expert/hesitation/retry/failure)"
    )
    parser.add_argument(
        "--label-key", default=None, help="evaluate this stored value column instead of predicting"
    )
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument(
        "--episode-plots", action=argparse.BooleanOptionalAction, default=True,
        help="also draw every episode on its own, at the model's value scale, into OUT/episodes/",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--milestone-window", type=int, default=EventSettings.milestone_window,
        help="frames averaged on each side of a stage completion",
    )  # fmt: skip
    parser.add_argument(
        "--error-window", type=int, default=EventSettings.error_window,
        help="frames averaged before a fall's peak and around its trough",
    )  # fmt: skip
    parser.add_argument(
        "--event-delta", type=float, default=EventSettings.milestone_delta,
        help="rise/fall of the normalised value that detects a milestone/error",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.label_key is None:
        parser.error(
            "pass --checkpoint (a value checkpoint to run) or --label-key (values already in the store)"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = EventSettings(
        milestone_window=args.milestone_window,
        error_window=args.error_window,
        milestone_delta=args.event_delta,
        error_delta=args.event_delta,
    )
    report = evaluate_checkpoint(
        args.checkpoint,
        ReplayStore.open(args.store),
        args.out,
        name=args.name,
        tags=read_tags(args.tags),
        label_key=args.label_key,
        max_episodes=args.max_episodes,
        batch_size=args.batch_size,
        device=args.device,
        settings=settings,
        episode_plots=args.episode_plots,
    )
    print(report["table"])
    print(f"wrote {Path(args.out) / 'metrics.md'}, metrics.json and {report['plot']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
