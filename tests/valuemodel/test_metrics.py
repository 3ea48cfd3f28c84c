import numpy as np
import pytest

from valuemodel.metrics import (
    decreasing_windows,
    hesitation_rmse,
    milestone_detection_rate,
    pearson,
    progress_drops,
    retry_voc,
    spearman,
    stage_completions,
    voc,
)
from valuemodel.plots import ValueCurve, plot_value_curves


def test_voc_on_toy_curves():
    t = np.arange(20, dtype=float)
    assert voc(t**2) == pytest.approx(1.0)
    assert voc(-t) == pytest.approx(-1.0)
    assert voc(np.ones(20)) == 0.0
    noisy = t + np.random.default_rng(0).normal(0, 1.0, 20)
    assert 0.8 < voc(noisy) < 1.0


def test_correlations_against_progress():
    gt = np.linspace(0, 1, 30)
    assert pearson(2 * gt - 1, gt) == pytest.approx(1.0)
    assert spearman(np.exp(gt), gt) == pytest.approx(1.0)
    assert pearson(np.exp(5 * gt), gt) < 1.0
    with pytest.raises(ValueError, match="length"):
        pearson(gt, gt[:-1])


def test_hesitation_rmse():
    gt = np.array([0.0, 0.2, 0.2, 0.2, 0.6, 1.0])
    assert hesitation_rmse(gt, gt) == 0.0
    assert hesitation_rmse(gt + 0.1, gt) == pytest.approx(0.1)


def test_retry_voc_on_v_shape():
    gt = np.array([0.0, 0.2, 0.4, 0.6, 0.5, 0.4, 0.3, 0.4, 0.6, 0.8, 1.0])
    assert [(w.start, w.stop) for w in decreasing_windows(gt)] == [(3, 7)]
    assert retry_voc(gt * 2 - 1, gt) == pytest.approx(1.0)  # follows the undo
    monotone = np.arange(gt.size, dtype=float)
    assert retry_voc(monotone, gt) == pytest.approx(-1.0)  # a time-only model is blind to the undo
    assert np.isnan(retry_voc(monotone, np.linspace(0, 1, 11)))
    assert decreasing_windows(np.array([1.0, 0.5, 0.6])) == []  # a 2-frame drop is below min_length


def test_milestones_and_errors():
    stages = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    assert stage_completions(stages).tolist() == [3, 6, 9]
    stepped = stages.astype(float) / 3  # a value that jumps at every stage completion
    assert milestone_detection_rate(stepped, [3, 6, 9], window=2, delta=0.1) == 1.0
    assert milestone_detection_rate(np.zeros(10), [3, 6, 9], window=2, delta=0.1) == 0.0
    assert np.isnan(milestone_detection_rate(stepped, [], window=2))

    gt = np.array([0.1, 0.2, 0.3, 0.4, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5])
    onsets = progress_drops(gt, delta=0.2, window=3)
    assert onsets.tolist() == [3]


def test_plot_value_curves(tmp_path):
    gt = np.linspace(0, 1, 25)
    path = plot_value_curves(
        [ValueCurve(gt, gt, "a"), ValueCurve(gt**2, None, "b")], tmp_path / "p" / "c.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing"):
        plot_value_curves([], tmp_path / "x.png")
