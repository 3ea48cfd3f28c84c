"""The issue's CPU check, end to end on the simulator: tiny ViVa (the shipped ``configs/valuemodel/tiny.yaml``,
random-init backbone) trained by the value learner on recorded scripted-expert episodes must order held-out expert
episodes (VOC >= 0.9) as scored by ``vivarl-eval-value``'s evaluation.

The CPU budget is fixed in work, not wall time: 11 recorded episodes, 400 steps of batch 32 (about 2 minutes on
2 cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from actors.local import record_demonstrations, sim_arm
from learners.evaluate_value import evaluate_checkpoint
from learners.value_learner import ValueLearner, ValueLearnerConfig
from replay import Outcome, ReplayStore
from robot_io.config import ExpertConfig, SimBoxConfig
from valuemodel.config import ValueModelConfig

ROOT = Path(__file__).resolve().parents[2]
SIM = SimBoxConfig(cameras=["front", "wrist"])  # 64x64 at 10 Hz, as tiny.yaml expects


@pytest.mark.slow
def test_tiny_viva_trained_on_the_simulator_orders_held_out_expert_episodes(tmp_path):
    # Pauses and dropped items (picked up again) as in ordinary collected data.
    train = sim_arm(SIM, ExpertConfig(hesitation_prob=0.3, drop_prob=0.1))
    record_demonstrations(str(tmp_path / "train"), train, range(11))
    experts = record_demonstrations(str(tmp_path / "held_out"), sim_arm(SIM), range(1000, 1003))
    assert all(e.outcome is Outcome.SUCCESS for e in experts)
    held_out = ReplayStore.open(str(tmp_path / "held_out"))

    fields = yaml.safe_load((ROOT / "configs/valuemodel/tiny.yaml").read_text())
    learner_config = ValueLearnerConfig(
        store_url=str(tmp_path / "train"),
        checkpoint_root=str(tmp_path / "ckpt"),
        steps=400,
        batch_size=32,
        learning_rate=1e-3,
        task_names=["box_assembly"],
        time_limit=SIM.max_steps,
        checkpoint_every=0,
        device="cpu",
        seed=0,
    )
    ValueLearner(learner_config, ValueModelConfig(**fields)).refit(0)

    report = evaluate_checkpoint(tmp_path / "ckpt", held_out, tmp_path / "eval", name="ViVa")
    vocs = [row["voc"] for row in report["episodes"]]
    assert len(vocs) == 3 and report["summary"]["ViVa"]["voc"] >= 0.9 and min(vocs) >= 0.8, vocs
    assert np.isfinite(vocs).all()
    assert (tmp_path / "eval" / "value_curves.png").is_file()
