"""Value-model evaluation on predicted curves (pure numpy + matplotlib): per-episode metrics, a table, plots.

Input is one ``EpisodeCurve`` per episode: predicted values (model range [-1, 1]) and, where the data has it,
ground-truth progress in [0, 1] and stage indices. Which metrics an episode enters depends on its kinds:

- VOC: successful episodes (time order is the true order only when the task was done);
- Pearson / Spearman against ground-truth progress: every episode with ground truth;
- Hesitation-RMSE: ``hesitation`` episodes; Retry-VOC: ``retry`` episodes (windows where ground truth falls);
- milestone detection: stage completions (``metrics.stage_completions``); error detection: ground-truth falls of at
  least ``EventSettings.drop_delta`` (``metrics.progress_drops``). Rates are pooled over all events of all episodes.

Units. RECAP value targets are steps-to-go, not progress: the two differ by an affine map that depends on episode
length and outcome. Magnitude metrics (Hesitation-RMSE, event detection) therefore compare shapes: each predicted
curve is min-max normalised onto [0, 1] within its episode before it meets ground-truth progress (already in
[0, 1]). Correlations are affine-invariant and use the raw prediction. A reference row computed with the ground
truth itself as the prediction shows what the event thresholds allow at best.

Kinds come from the data source when it knows them (the simulator's expert records which knobs fired); otherwise
``infer_kinds`` derives ``failure``/``retry``/``expert`` from the outcome and the ground-truth shape. Hesitation is
not inferred: the expert's own motion has plateaus as long as its pauses, so a plateau does not mark one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from valuemodel import metrics
from valuemodel.plots import ValueCurve, plot_episode_value, plot_value_curves

EPISODE_KINDS = ("expert", "hesitation", "retry", "failure")
SUMMARY_COLUMNS = {
    "voc": "VOC",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "hes_rmse": "Hes-RMSE",
    "retry_voc": "Retry-VOC",
    "milestone_rate": "MDR",
    "error_rate": "ErrDR",
}


@dataclass
class EventSettings:
    """Thresholds of the event metrics, in progress units ([0, 1]) and frames."""

    milestone_window: int = 15
    """Frames averaged on each side of a milestone. Progress is continuous across a stage completion (the next
    stage's measure starts where the last one ended), so the rise shows only over a span: on the 232 completions
    of the retry-heavy held-out set, ground truth itself rises >= 0.05 across 32% of them with 5 frames a side
    and 98% with 15. A window the ground truth fails would score every model against an unreachable bar."""
    error_window: int = 5
    """Frames averaged before an error's peak and around its trough (``detected_falls``)."""
    milestone_delta: float = 0.05
    """Rise of the normalised prediction across a milestone that counts as detecting it."""
    error_delta: float = 0.05
    """Fall of the normalised prediction after an error onset that counts as detecting it."""
    drop_delta: float = 0.05
    """Ground-truth fall (within ``drop_window`` frames) that makes an error onset."""
    drop_window: int = 15
    retry_min_length: int = 3
    """Shortest falling ground-truth run that makes a Retry-VOC window / a retry."""


@dataclass
class EpisodeCurve:
    """One evaluated episode."""

    episode_id: str
    pred: np.ndarray
    """(T,) predicted values in the model range [-1, 1]."""
    progress: np.ndarray | None = None
    """(T,) ground-truth progress in [0, 1]; None when the source has none."""
    stage: np.ndarray | None = None
    """(T,) ground-truth stage index (completed stages); None when unknown."""
    success: bool | None = None
    kinds: tuple[str, ...] = ()
    """Subset of EPISODE_KINDS; empty: inferred by ``infer_kinds``."""
    extra: dict[str, Any] = field(default_factory=dict)


def infer_kinds(
    progress: np.ndarray | None, success: bool | None, settings: EventSettings
) -> tuple[str, ...]:
    """failure / retry / expert from the outcome and the ground truth's shape (hesitation needs tags)."""
    if success is False:
        return ("failure",)
    if progress is not None and metrics.decreasing_windows(progress, settings.retry_min_length, tol=1e-3):
        return ("retry",)
    return ("expert",) if success else ()


def error_falls(progress: np.ndarray, settings: EventSettings) -> list[tuple[int, int]]:
    """(peak, trough) frames of every ground-truth fall found by ``metrics.progress_drops``.

    ``progress_drops`` fires at the first frame whose value exceeds a later one by ``drop_delta``; on a curve still
    rising into the fall that frame lies before the peak, and a fall longer than ``drop_window`` fires again
    part-way down (the same error). Each onset is therefore moved to the peak, mid-fall onsets are dropped, and
    the trough is where the fall ends.
    """
    g = np.asarray(progress, dtype=np.float64)
    falls = []
    for onset in metrics.progress_drops(g, settings.drop_delta, settings.drop_window):
        peak = int(onset)
        while peak + 1 < g.size and g[peak + 1] >= g[peak]:
            peak += 1
        if peak > 0 and g[peak - 1] > g[peak]:
            continue
        trough = peak
        while trough + 1 < g.size and g[trough + 1] <= g[trough]:
            trough += 1
        if g[peak] - g[trough] >= settings.drop_delta:
            falls.append((peak, trough))
    return falls


def detected_falls(shape: np.ndarray, falls: list[tuple[int, int]], settings: EventSettings) -> int:
    """Falls over which the normalised prediction drops by >= ``error_delta``: its mean over the ``error_window``
    frames up to the peak against its mean over as many frames centred on the trough.

    Comparing the windows either side of one onset frame suits a sudden fall but not the simulator's undo of a
    stage, a steady fall over 10-15 frames that the ground truth itself does not pass.
    """
    w = settings.error_window
    hits = 0
    for peak, trough in falls:
        before = shape[max(0, peak - w + 1) : peak + 1].mean()
        after = shape[max(0, trough - w // 2) : trough + w // 2 + 1].mean()
        hits += int(before - after >= settings.error_delta)
    return hits


def normalise_curve(values: np.ndarray) -> np.ndarray:
    """Min-max onto [0, 1] within the episode; a flat curve maps to 0.5 (it carries no shape)."""
    v = np.asarray(values, dtype=np.float64)
    span = np.ptp(v)
    return np.full_like(v, 0.5) if span == 0 else (v - v.min()) / span


def episode_metrics(curve: EpisodeCurve, settings: EventSettings) -> dict[str, Any]:
    kinds = curve.kinds or infer_kinds(curve.progress, curve.success, settings)
    pred = np.asarray(curve.pred, dtype=np.float64)
    shape = normalise_curve(pred)
    nan = float("nan")
    out: dict[str, Any] = {"episode_id": curve.episode_id, "kinds": list(kinds), "length": int(pred.size)}
    out["voc"] = metrics.voc(pred) if curve.success else nan
    gt = curve.progress
    has_gt = gt is not None and gt.shape == pred.shape and bool(np.isfinite(gt).all())
    out["pearson"] = metrics.pearson(pred, gt) if has_gt else nan
    out["spearman"] = metrics.spearman(pred, gt) if has_gt else nan
    out["hes_rmse"] = metrics.hesitation_rmse(shape, gt) if has_gt and "hesitation" in kinds else nan
    out["retry_voc"] = (
        metrics.retry_voc(pred, gt, settings.retry_min_length) if has_gt and "retry" in kinds else nan
    )
    milestones = np.zeros(0, dtype=np.int64)
    if curve.stage is not None and np.all(np.asarray(curve.stage) >= 0):
        milestones = metrics.stage_completions(curve.stage)
    falls = error_falls(gt, settings) if has_gt else []
    mdr = metrics.milestone_detection_rate(
        shape, milestones, settings.milestone_window, settings.milestone_delta
    )
    out["milestones"], out["milestones_detected"] = (
        int(milestones.size),
        int(round(np.nan_to_num(mdr) * milestones.size)),
    )
    out["errors"], out["errors_detected"] = len(falls), detected_falls(shape, falls, settings)
    return out


def finite_mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    """Mean of ``row[key]`` over the rows where it is finite (a metric applies only to some episodes); NaN if none."""
    values = [r[key] for r in rows if np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


# Detection rates: summary key -> (events column, detected column) of an ``episode_metrics`` row.
RATE_COUNTS = {
    "milestone_rate": ("milestones", "milestones_detected"),
    "error_rate": ("errors", "errors_detected"),
}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Averages over the episodes each metric applies to; detection rates pooled over events."""
    summary = {key: finite_mean(rows, key) for key in ("voc", "pearson", "spearman", "hes_rmse", "retry_voc")}
    for name, (total, hit) in RATE_COUNTS.items():
        events = sum(r[total] for r in rows)
        summary[name] = sum(r[hit] for r in rows) / events if events else float("nan")
        summary[total] = float(events)
    summary["episodes"] = float(len(rows))
    for kind in EPISODE_KINDS:
        summary[f"episodes_{kind}"] = float(sum(kind in r["kinds"] for r in rows))
    return summary


def episode_means(rows: Sequence[dict[str, Any]], key: str) -> dict[str, tuple[float, ...]]:
    """episode id -> the metric ``key`` averaged over that episode's rows (one row per training seed).

    Mean metrics give (value,); detection rates give (events, detected), so that pooling stays a ratio of sums.
    Episodes where a mean metric does not apply (NaN) are left out.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["episode_id"], []).append(row)
    out: dict[str, tuple[float, ...]] = {}
    for episode_id, group in grouped.items():
        if key in RATE_COUNTS:
            total, hit = RATE_COUNTS[key]
            out[episode_id] = (
                float(np.mean([r[total] for r in group])),
                float(np.mean([r[hit] for r in group])),
            )
        else:
            value = finite_mean(group, key)
            if np.isfinite(value):
                out[episode_id] = (value,)
    return out


def paired_difference(
    rows_a: Sequence[dict[str, Any]], rows_b: Sequence[dict[str, Any]], key: str, *,
    confidence: float = 0.9, n_resamples: int = 2000, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Model A minus model B on one metric over the episodes both were scored on, with a bootstrap interval.

    Rows are ``episode_metrics`` rows (several seeds per episode are averaged first). Episodes are resampled in
    pairs (``scipy.stats.bootstrap``, BCa), so the interval reflects which episodes were drawn, not the spread
    between training seeds: report the per-seed values beside it. Detection rates are pooled over events in each
    resample, as in ``summarise``.
    """
    from scipy import stats

    a, b = episode_means(rows_a, key), episode_means(rows_b, key)
    shared = sorted(set(a) & set(b))
    if key in RATE_COUNTS:
        shared = [e for e in shared if a[e][0] > 0]
    nan = float("nan")
    if len(shared) < 2:
        return {"difference": nan, "low": nan, "high": nan, "episodes": float(len(shared))}
    if key in RATE_COUNTS:
        events = np.array([a[e][0] for e in shared])
        hits_a, hits_b = np.array([a[e][1] for e in shared]), np.array([b[e][1] for e in shared])

        def statistic(n: np.ndarray, x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return (x.sum(axis) - y.sum(axis)) / n.sum(axis)

        samples: tuple[np.ndarray, ...] = (events, hits_a, hits_b)
    else:
        diff = np.array([a[e][0] - b[e][0] for e in shared])

        def statistic(d: np.ndarray, axis: int = -1) -> np.ndarray:
            return d.mean(axis)

        samples = (diff,)
    point = float(statistic(*samples))
    interval = (point, point)
    # BCa first; it is undefined when every resample gives the same statistic (e.g. both models detect the
    # same falls in every episode), where the percentile interval is the honest answer (here: the point).
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                samples, statistic, paired=True, vectorized=True, confidence_level=confidence,
                n_resamples=n_resamples, method=method, rng=np.random.default_rng(seed),
            )  # fmt: skip
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            interval = (low, high)
            break
    return {"difference": point, "low": interval[0], "high": interval[1], "episodes": float(len(shared))}


def seed_difference(seeds_a: Sequence[float], seeds_b: Sequence[float]) -> dict[str, float]:
    """Model A minus model B over training seeds: the difference of the seed means and a one-sided p-value.

    ``paired_difference`` holds each trained model fixed and asks which episodes were drawn; this asks whether A's
    seeds sit above B's, so a wide seed spread shows. Seeds of two models are independent draws, not pairs: the
    p-value is the Mann-Whitney U test's for "A above B" (``scipy.stats.mannwhitneyu``); with 5 seeds each and
    no ties, the smallest it can be is 1/252. Seeds a metric does not apply to (NaN) are left out.
    """
    from scipy import stats

    a = np.array([v for v in seeds_a if np.isfinite(v)])
    b = np.array([v for v in seeds_b if np.isfinite(v)])
    if len(a) < 2 or len(b) < 2:
        return {"difference": float("nan"), "p": float("nan"), "seeds": float(min(len(a), len(b)))}
    p = float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)
    return {"difference": float(a.mean() - b.mean()), "p": p, "seeds": float(min(len(a), len(b)))}


def markdown_table(summaries: dict[str, dict[str, float]]) -> str:
    """One row per model; lower is better only for Hes-RMSE."""
    header = "| model | " + " | ".join(SUMMARY_COLUMNS.values()) + " | episodes |"
    lines = [header, "|" + "---|" * (len(SUMMARY_COLUMNS) + 2)]
    for name, s in summaries.items():
        cells = ["n/a" if not np.isfinite(s[k]) else f"{s[k]:.2f}" for k in SUMMARY_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(s['episodes'])} |")
    return "\n".join(lines)


def reference_curves(curves: Sequence[EpisodeCurve]) -> list[EpisodeCurve]:
    """The same episodes with ground-truth progress as the prediction (model range), for the reference row."""
    return [
        EpisodeCurve(c.episode_id, 2.0 * c.progress - 1.0, c.progress, c.stage, c.success, c.kinds)
        for c in curves
        if c.progress is not None and bool(np.isfinite(c.progress).all())
    ]


def overview_panels(
    curves: Sequence[EpisodeCurve], settings: EventSettings, limit: int = 12
) -> list[ValueCurve]:
    """The overview's panels: episodes of every kind first, each prediction min-max normalised, its raw range in
    the title (the normalisation draws a flat low curve and a flat high one alike, at the top)."""
    by_kind: dict[str, list[EpisodeCurve]] = {}
    for c in curves:
        by_kind.setdefault(
            (c.kinds or infer_kinds(c.progress, c.success, settings) or ("unknown",))[0], []
        ).append(c)
    ordered: list[EpisodeCurve] = []
    while len(ordered) < min(limit, len(curves)):
        for group in by_kind.values():
            if group and len(ordered) < limit:
                ordered.append(group.pop(0))
    return [
        ValueCurve(
            normalise_curve(c.pred),
            c.progress,
            f"{c.episode_id[-8:]} {'+'.join(c.kinds) or '?'}  raw {np.min(c.pred):+.2f}..{np.max(c.pred):+.2f}",
        )
        for c in ordered
    ]


def plot_curves(
    curves: Sequence[EpisodeCurve], path: str | Path, settings: EventSettings, limit: int = 12
) -> Path:
    """Normalised predictions with ground-truth progress overlaid; see ``overview_panels``."""
    panels = overview_panels(curves, settings, limit)
    return plot_value_curves(panels, path, columns=4, ylabel="value (normalised) / progress")


EPISODE_PLOTS_DIR = "episodes"


def plot_every_episode(curves: Sequence[EpisodeCurve], folder: Path) -> None:
    """One PNG per episode, at the model's own value scale (the overview grid normalises each curve)."""
    outcomes = {True: "success", False: "failure", None: "unlabelled"}
    for c in curves:
        title = f"{c.episode_id} {'+'.join(c.kinds) or '?'} ({outcomes[c.success]})"
        plot_episode_value(c.pred, c.progress, title, folder / f"{c.episode_id}.png", value_range=(-1.1, 1.1))


def write_report(report: dict[str, Any], out_dir: Path) -> str:
    """Write an evaluation report (model, settings, summary, episodes) as metrics.json and its summary table as
    metrics.md; returns the table."""
    table = markdown_table(report["summary"])
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    (out_dir / "metrics.md").write_text(f"# Value model evaluation: {report['model']}\n\n{table}\n")
    return table


def evaluate_curves(
    curves: Sequence[EpisodeCurve], out_dir: str | Path, *, name: str = "model",
    settings: EventSettings | None = None, plot_limit: int = 12, episode_plots: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of every episode and their summary; writes metrics.json, metrics.md and value_curves.png (an
    overview of ``plot_limit`` episodes, every kind first), and with ``episode_plots`` one PNG per episode in
    ``episodes/``."""
    settings = settings or EventSettings()
    if not curves:
        raise ValueError("no episodes to evaluate")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [episode_metrics(c, settings) for c in curves]
    summaries = {name: summarise(rows)}
    reference = reference_curves(curves)
    if reference:
        summaries["ground truth (reference)"] = summarise([episode_metrics(c, settings) for c in reference])
    report = {"model": name, "settings": asdict(settings), "summary": summaries, "episodes": rows}
    table = write_report(report, out_dir)
    plot = plot_curves(curves, out_dir / "value_curves.png", settings, plot_limit)
    if episode_plots:
        plot_every_episode(curves, out_dir / EPISODE_PLOTS_DIR)
    return {**report, "table": table, "plot": str(plot)}
