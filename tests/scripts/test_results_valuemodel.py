"""The value-model results script keeps a trained checkpoint under --reuse only when it was made the same way."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from results_valuemodel import training_record  # noqa: E402

from learners.value_learner import ValueLearnerConfig  # noqa: E402
from valuemodel.config import ValueModelConfig  # noqa: E402


def test_a_saved_training_record_matches_only_the_same_training(tmp_path):
    learner = ValueLearnerConfig(
        store_url=str(tmp_path / "train"), checkpoint_root=str(tmp_path / "c"), seed=1
    )
    model = ValueModelConfig.preset(
        "tiny",
        "wvm",
        cameras=["front", "wrist"],
        transformer_overrides={"num_layers": 4, "patch_size": (1, 2, 2)},
    )
    backbone = {"vae_loss": 0.0048, "seconds": 1167.9}
    saved = tmp_path / "trained.json"
    saved.write_text(json.dumps(training_record(learner, model, backbone)))
    kept = json.loads(saved.read_text())
    # Read back from JSON (tuples become lists), it still equals what the same flags ask for ...
    assert kept == training_record(learner, model, backbone)
    # ... and differs as soon as the seed, the model or the backbone does.
    assert kept != training_record(replace(learner, seed=2), model, backbone)
    assert kept != training_record(learner, replace(model, rewind_prob=0.5), backbone)
    assert kept != training_record(learner, model, {**backbone, "seconds": 1200.0})
