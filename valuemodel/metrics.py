"""Value-curve quality metrics (pure numpy/scipy), one episode at a time.

Inputs are 1-D arrays in time order: ``pred`` the predicted values, ``gt`` the ground-truth progress. Metrics that
compare magnitudes (Hesitation-RMSE) need both in the same units (``valuemodel.evaluate`` min-max normalises
each predicted curve first). Correlations of a constant curve are undefined; they are reported as 0 (no order
information) rather than NaN, so a collapsed model scores 0, not "missing". Averages over episodes are the
caller's (``np.nanmean`` over episodes for the rates, which are NaN when an episode has no events).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _as_curve(x: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D curve, got shape {arr.shape}")
    return arr


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"curves differ in length: {a.shape} vs {b.shape}")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(fn(a, b)[0])


def spearman(pred: np.ndarray | list[float], gt: np.ndarray | list[float]) -> float:
    """Spearman rank correlation of predicted values and ground-truth progress."""
    return _correlation(stats.spearmanr, _as_curve(pred), _as_curve(gt))


def pearson(pred: np.ndarray | list[float], gt: np.ndarray | list[float]) -> float:
    """Pearson correlation of predicted values and ground-truth progress."""
    return _correlation(stats.pearsonr, _as_curve(pred), _as_curve(gt))


def voc(pred: np.ndarray | list[float]) -> float:
    """Value-order correlation (GVL): Spearman of predicted values against the frame index.

    Meant for successful (expert) episodes, whose true progress rises with time; range [-1, 1].
    """
    curve = _as_curve(pred)
    return _correlation(stats.spearmanr, curve, np.arange(curve.size, dtype=np.float64))


def hesitation_rmse(pred: np.ndarray | list[float], gt: np.ndarray | list[float]) -> float:
    """Root-mean-square error between prediction and ground-truth progress over the whole episode.

    On hesitation episodes the ground truth plateaus while the arm pauses; a model that keeps rising with time
    (or falls) during the plateau pays for it here, which VOC cannot see. Both curves in the same units.
    """
    p, g = _as_curve(pred), _as_curve(gt)
    if p.shape != g.shape:
        raise ValueError(f"curves differ in length: {p.shape} vs {g.shape}")
    return float(np.sqrt(np.mean((p - g) ** 2)))


def decreasing_windows(gt: np.ndarray | list[float], min_length: int = 3, tol: float = 0.0) -> list[slice]:
    """Maximal runs of frames over which the ground truth strictly decreases (gt[i+1] < gt[i] - tol).

    A run [s, e) includes the frame where the decrease starts, so it spans e - s frames and e - s - 1 drops;
    runs shorter than ``min_length`` frames are dropped (a rank correlation of 2 points is always +-1).
    """
    g = _as_curve(gt)
    falling = np.diff(g) < -tol
    windows: list[slice] = []
    start = None
    for i, down in enumerate(falling):
        if down and start is None:
            start = i
        elif not down and start is not None:
            windows.append(slice(start, i + 1))
            start = None
    if start is not None:
        windows.append(slice(start, g.size))
    return [w for w in windows if w.stop - w.start >= min_length]


def retry_voc(pred: np.ndarray | list[float], gt: np.ndarray | list[float], min_length: int = 3) -> float:
    """VOC inside the windows where ground truth decreases (the undo of a retry), averaged over windows.

    In each window of ``decreasing_windows(gt, min_length)`` it is the Spearman correlation of the predicted
    values with the ground truth, which there equals the correlation with the *reversed* frame index: +1 when the
    prediction falls frame by frame with the undo, -1 when it keeps rising. NaN when the episode has no window.
    """
    p, g = _as_curve(pred), _as_curve(gt)
    windows = decreasing_windows(g, min_length)
    if not windows:
        return float("nan")
    return float(np.mean([spearman(p[w], g[w]) for w in windows]))


def stage_completions(stages: np.ndarray | list[int]) -> np.ndarray:
    """Milestones: frame indices i where the ground-truth stage index increases (stages[i] > stages[i-1])."""
    s = np.asarray(stages)
    return np.flatnonzero(np.diff(s) > 0) + 1


def progress_drops(gt: np.ndarray | list[float], delta: float, window: int) -> np.ndarray:
    """Errors: onsets i where ground-truth progress falls by >= ``delta`` within the next ``window`` frames.

    An onset is the first frame i with gt[i] - min(gt[i+1 : i+1+window]) >= delta; the search resumes after the
    frame where that drop bottoms out, so one fall counts once.
    """
    g = _as_curve(gt)
    onsets: list[int] = []
    i = 0
    while i < g.size - 1:
        ahead = g[i + 1 : i + 1 + window]
        if g[i] - ahead.min() >= delta:
            onsets.append(i)
            i = i + 1 + int(np.argmin(ahead)) + 1
        else:
            i += 1
    return np.asarray(onsets, dtype=np.int64)


def _change_at(pred: np.ndarray, index: int, window: int) -> float:
    """mean(pred[i : i+window]) - mean(pred[i-window : i]); the episode's end frames stand in for empty sides."""
    before = pred[max(0, index - window) : index]
    after = pred[index : index + window]
    if before.size == 0:
        before = pred[index : index + 1]
    if after.size == 0:
        after = pred[index - 1 : index]
    return float(after.mean() - before.mean())


def milestone_detection_rate(
    pred: np.ndarray | list[float], milestones: np.ndarray | list[int], window: int = 5, delta: float = 0.05
) -> float:
    """Fraction of milestones at which the prediction rises by >= ``delta``.

    Milestone i (e.g. from ``stage_completions``) is detected when mean(pred[i : i+window]) -
    mean(pred[i-window : i]) >= delta. NaN when there are no milestones.
    """
    p = _as_curve(pred)
    events = np.asarray(milestones, dtype=np.int64)
    if events.size == 0:
        return float("nan")
    return float(np.mean([_change_at(p, int(i), window) >= delta for i in events]))
