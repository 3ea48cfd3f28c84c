"""valuemodel.evaluate: per-episode metrics on crafted curves, the summary table and the written report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from valuemodel.evaluate import (
    EpisodeCurve,
    EventSettings,
    episode_metrics,
    error_falls,
    evaluate_curves,
    infer_kinds,
    markdown_table,
    overview_panels,
    paired_difference,
    seed_difference,
    summarise,
)


def retry_progress(length: int = 120) -> np.ndarray:
    """Rises to 0.5, falls back to 0.3 over 15 frames (the undo), then rises to 1."""
    up = np.linspace(0.0, 0.5, 50)
    down = np.linspace(0.5, 0.3, 16)[1:]
    redo = np.linspace(0.3, 1.0, length - 65)
    return np.concatenate([up, down, redo])


def test_a_value_that_tracks_progress_scores_perfectly_on_a_retry():
    gt = retry_progress()
    stage = np.floor(np.maximum.accumulate(gt) * 4).clip(0, 4).astype(int)
    curve = EpisodeCurve("e", pred=2 * gt - 1, progress=gt, stage=stage, success=True, kinds=("retry",))
    row = episode_metrics(curve, EventSettings())
    assert row["retry_voc"] == 1.0 and row["pearson"] > 0.999
    assert row["errors"] == 1 and row["errors_detected"] == 1
    assert np.isnan(row["hes_rmse"]), "Hes-RMSE only on hesitation episodes"


def test_a_monotone_value_misses_the_retry_and_the_error():
    gt = retry_progress()
    time_only = np.linspace(-1, 1, gt.size)
    row = episode_metrics(EpisodeCurve("e", time_only, gt, None, True, ("retry",)), EventSettings())
    assert row["voc"] == 1.0, "VOC cannot see the retry"
    assert row["retry_voc"] == -1.0 and row["errors_detected"] == 0


def test_hesitation_rmse_compares_shapes_in_progress_units():
    gt = np.concatenate([np.linspace(0, 0.4, 40), np.full(30, 0.4), np.linspace(0.4, 1, 40)])
    same_shape = 0.5 * gt - 0.7  # other units, same shape
    rising = np.linspace(0, 1, gt.size)
    settings = EventSettings()
    assert (
        episode_metrics(EpisodeCurve("a", same_shape, gt, None, True, ("hesitation",)), settings)["hes_rmse"]
        < 1e-9
    )
    assert (
        episode_metrics(EpisodeCurve("b", rising, gt, None, True, ("hesitation",)), settings)["hes_rmse"]
        > 0.05
    )


def test_an_error_is_the_fall_from_peak_to_trough():
    gt = retry_progress()
    assert error_falls(gt, EventSettings()) == [(49, 65)]


def test_ground_truth_detects_a_milestone_it_passes_smoothly():
    # The simulator's progress has no step at a stage completion: it keeps rising at the same slope. Scored as its
    # own prediction, the ground truth must detect its milestones, and a curve flat across them must not.
    # Over 200 frames it rises 0.025 (normalised) across 5 frames either side, 0.075 across 15.
    gt = np.linspace(0.0, 0.5, 200)
    stage = (np.arange(200) >= 100).astype(np.int64)
    flat_at_milestone = np.concatenate([np.linspace(0, 0.3, 80), np.full(40, 0.3), np.linspace(0.3, 0.5, 80)])
    settings = EventSettings()
    detected = episode_metrics(EpisodeCurve("gt", gt, gt, stage, True, ("expert",)), settings)
    missed = episode_metrics(EpisodeCurve("flat", flat_at_milestone, gt, stage, True, ("expert",)), settings)
    assert detected["milestones"] == 1 and detected["milestones_detected"] == 1
    assert missed["milestones_detected"] == 0


def test_kinds_are_inferred_from_outcome_and_ground_truth():
    settings = EventSettings()
    assert infer_kinds(retry_progress(), True, settings) == ("retry",)
    assert infer_kinds(np.linspace(0, 1, 50), True, settings) == ("expert",)
    assert infer_kinds(np.linspace(0, 0.5, 50), False, settings) == ("failure",)


def test_report_is_written_with_table_json_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    gt = retry_progress()
    curves = [
        EpisodeCurve(f"ep{i}", 2 * gt - 1 + rng.normal(0, 0.05, gt.size), gt, None, True, ("retry",))
        for i in range(3)
    ] + [EpisodeCurve("nogt", rng.normal(size=40), None, None, None)]
    report = evaluate_curves(curves, tmp_path, name="noisy")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["summary"]["noisy"]["episodes"] == 4 and len(saved["episodes"]) == 4
    assert "ground truth (reference)" in saved["summary"]
    assert (tmp_path / "value_curves.png").stat().st_size > 1000
    assert "| noisy |" in (tmp_path / "metrics.md").read_text()
    assert report["summary"]["noisy"]["retry_voc"] > 0.5


def test_overview_titles_keep_the_raw_level_the_normalisation_hides():
    gt = np.concatenate([np.linspace(0.0, 0.25, 30), np.full(70, 0.25)])
    # A dead episode valued low and a success valued high look the same once each is min-max normalised.
    low = EpisodeCurve(
        "low-fail", np.concatenate([np.linspace(-0.5, -0.9, 30), np.full(70, -0.88)]), gt, None, False
    )
    high = EpisodeCurve(
        "high-fail", np.concatenate([np.linspace(0.5, 0.1, 30), np.full(70, 0.12)]), gt, None, False
    )
    panels = overview_panels([low, high], EventSettings())
    np.testing.assert_allclose(panels[0].pred, panels[1].pred, atol=1e-6)
    assert "raw -0.90..-0.50" in panels[0].title and "raw +0.10..+0.50" in panels[1].title


def test_summary_pools_event_rates_and_marks_missing_metrics():
    rows = [
        {"voc": 1.0, "pearson": np.nan, "spearman": np.nan, "hes_rmse": np.nan, "retry_voc": np.nan,
         "milestones": 3, "milestones_detected": 3, "errors": 0, "errors_detected": 0, "kinds": ["expert"]},
        {"voc": 0.0, "pearson": np.nan, "spearman": np.nan, "hes_rmse": np.nan, "retry_voc": np.nan,
         "milestones": 1, "milestones_detected": 0, "errors": 0, "errors_detected": 0, "kinds": ["expert"]},
    ]  # fmt: skip
    summary = summarise(rows)
    assert summary["milestone_rate"] == 0.75 and summary["voc"] == 0.5 and np.isnan(summary["error_rate"])
    assert "n/a" in markdown_table({"m": summary})


def _retry_rows(model_shift: float, episodes: int = 12, seeds: int = 1) -> list[dict]:
    """Rows of a model whose Retry-VOC is a per-episode draw plus ``model_shift``, and one error per episode."""
    rng = np.random.default_rng(0)
    base = rng.uniform(-0.2, 0.8, episodes)
    rows = []
    for seed in range(seeds):
        for i in range(episodes):
            detected = int(model_shift > 0 or i % 2 == 0)
            rows.append({"episode_id": f"e{i}", "retry_voc": base[i] + model_shift + 0.01 * seed,
                         "errors": 1, "errors_detected": detected})  # fmt: skip
    return rows


def test_paired_difference_finds_a_consistent_gap_and_its_interval_excludes_zero():
    better, worse = _retry_rows(0.3), _retry_rows(0.0)
    result = paired_difference(better, worse, "retry_voc")
    assert result["difference"] == pytest.approx(0.3)
    assert result["episodes"] == 12
    assert result["low"] == pytest.approx(0.3) and result["high"] == pytest.approx(0.3)
    rate = paired_difference(better, worse, "error_rate")
    assert rate["difference"] == pytest.approx(0.5), "12/12 detected against 6/12"
    assert 0 < rate["low"] < 0.5 < rate["high"] <= 1.0


def test_paired_difference_of_noise_straddles_zero_and_averages_seeds_first():
    rng = np.random.default_rng(1)
    a = _retry_rows(0.0, episodes=30, seeds=3)
    b = [{**r, "retry_voc": r["retry_voc"] + rng.normal(0, 0.3)} for r in _retry_rows(0.0, episodes=30)]
    result = paired_difference(a, b, "retry_voc")
    assert result["episodes"] == 30, "three seeds of one episode are one resampling unit"
    assert result["low"] < 0 < result["high"]
    assert result["low"] < result["difference"] < result["high"]


def test_paired_difference_skips_episodes_a_metric_does_not_apply_to():
    a = _retry_rows(0.1, episodes=4)
    b = _retry_rows(0.0, episodes=4)
    a[0]["retry_voc"] = float("nan")
    assert paired_difference(a, b, "retry_voc")["episodes"] == 3
    assert np.isnan(paired_difference(a[:1], b[:1], "retry_voc")["difference"])


def test_paired_difference_of_identical_detections_is_zero_with_a_zero_interval():
    rows = _retry_rows(0.0)  # half the episodes detected, the same ones for both models
    result = paired_difference(rows, [dict(r) for r in rows], "error_rate")
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)


def test_seed_difference_ranks_seeds_and_shows_an_overlapping_spread():
    apart = seed_difference([0.90, 0.92, 0.95, 0.91, 0.93], [0.70, 0.72, 0.75, 0.71, 0.73])
    assert apart["difference"] == pytest.approx(0.2)
    assert apart["p"] == pytest.approx(1 / 252), (
        "every ordering of 10 distinct seeds is equally likely under H0"
    )
    assert seed_difference([0.70, 0.72, 0.75], [0.90, 0.92, 0.95])["p"] > 0.9, "one-sided: A above B"
    # ViVa's and the static baseline's Retry-VOC over 5 seeds (RESULTS.md): ahead on average, not on every seed.
    overlapping = seed_difference([0.89, 0.62, 0.78, 0.89, 0.93], [0.68, 0.74, 0.75, 0.85, 0.86])
    assert overlapping["difference"] == pytest.approx(0.046)
    assert 0.05 < overlapping["p"] < 0.5


def test_seed_difference_leaves_out_seeds_a_metric_does_not_apply_to():
    result = seed_difference([0.9, float("nan"), 0.8], [0.5, 0.6])
    assert result["seeds"] == 2 and result["difference"] == pytest.approx(0.3)
    assert np.isnan(seed_difference([0.9, float("nan")], [0.5, 0.6])["p"])
