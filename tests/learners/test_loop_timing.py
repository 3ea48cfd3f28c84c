"""The learners' shared account of a training loop's time."""

import pytest

from learners.loop_timing import LoopTiming


def test_wait_fraction_and_samples_per_second():
    timing = LoopTiming()
    timing.add(0.0, 1.0, 4.0)  # 1 s waiting, 3 s computing
    timing.add(4.0, 4.0, 8.0)  # no wait, 4 s computing
    assert timing.data_wait_fraction == pytest.approx(1 / 8)
    assert timing.samples_per_s(steps=2, batch_size=32) == pytest.approx(64 / 8)


def test_an_empty_loop_reports_zero_not_a_division_error():
    timing = LoopTiming()
    assert timing.data_wait_fraction == 0.0 and timing.samples_per_s(0, 32) == 0.0
