"""Bad configs fail before Ray starts or any arm moves, naming the problem and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_config import compose_config

from improve.preflight import PreflightError, check_config


def test_a_good_config_passes():
    check_config(compose_config())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy_learner.base_checkpoint=/nonexistent/ckpt"], "base_checkpoint points to /nonexistent/ckpt"),
        (["valuemodel.pretrained_dir=/nonexistent/wan"], "valuemodel.pretrained_dir points to"),
        (["loop.demo_episodes=0"], "loop.demo_episodes must be at least 1"),
        (["robot@robots.sim1=so101"], r"arms \['sim1'\] are not simulated: set loop.outcome_source=operator"),
        (["valuemodel.cameras=[front,ceiling,wrist]"], r"valuemodel.cameras wants \[.ceiling.\]"),
        (["value_learner.store_url=/elsewhere"], "must be the run's store_url"),
        (["loop.seed=100", "loop.eval_seed_base=1000000050"], "overlap the training episodes' seeds"),
        (["loop.mode=overnight"], "loop.mode must be 'pipeline' or 'continual'"),
        (
            ["loop.mode=continual", "loop.max_collect_attempts=6"],
            "would draw seeds from the rollouts collected ahead",
        ),
        (["loop.rollouts_ahead=-1"], "loop.rollouts_ahead must be >= 0 and below 50000"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(overrides, message):
    with pytest.raises(PreflightError, match=message):
        check_config(compose_config(*overrides))


def test_the_command_stops_before_any_arm_moves(tmp_path):
    vivarl = str(Path(sys.executable).with_name("vivarl"))
    done = subprocess.run(
        [vivarl, f"run_dir={tmp_path / 'run'}", "policy_learner.base_checkpoint=/nonexistent/ckpt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "base_checkpoint points to /nonexistent/ckpt" in done.stderr + done.stdout
    assert not (tmp_path / "run" / "replay").exists()
