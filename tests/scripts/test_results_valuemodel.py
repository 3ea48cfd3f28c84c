"""The value-model results script keeps a trained checkpoint under --reuse only when it was made the same way, and
its evaluation only when it was of the same held-out store."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import results_valuemodel  # noqa: E402
from results_valuemodel import evaluate_or_keep, training_record  # noqa: E402

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


def test_a_kept_checkpoint_keeps_its_evaluation_only_of_the_same_held_out_store(tmp_path, monkeypatch):
    evaluated = []

    def fake_evaluate_checkpoint(root, store, out, name, tags):
        # Stands in for the real evaluation (minutes per checkpoint); what is under test is when it runs.
        evaluated.append(Path(root).name)
        report = {"summary": {name: {"retry_voc": 0.5 + len(evaluated)}}, "episodes": [{"n": len(evaluated)}]}
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report))
        return {**report, "table": "|table|"}

    monkeypatch.setattr(results_valuemodel, "evaluate_checkpoint", fake_evaluate_checkpoint)
    work, root = tmp_path / "work", tmp_path / "work" / "ckpt" / "value_viva_s0"
    root.mkdir(parents=True)
    (work / "trained.json").write_text(json.dumps({str(root): {"train_s": 1.0}}))
    knobs = {"episodes": 48, "retry": 0.6, "first_seed": 2000}
    (work / "recording.json").write_text(json.dumps({"eval": knobs}))

    store = SimpleNamespace(episode_ids=lambda: ["20261121T190238Z-a", "20261121T190301Z-b"])

    def run(out_name: str, kept: bool):
        return evaluate_or_keep(root, store, {}, tmp_path / out_name, "ViVa", work, kept)

    first, _, kept_first = run("plots_a", kept=True)  # no evaluation recorded yet
    again, _, kept_again = run("plots_b", kept=True)
    assert (evaluated, kept_first, kept_again) == (["value_viva_s0"], False, True)
    assert again == json.loads((tmp_path / "plots_a" / "metrics.json").read_text())
    assert (tmp_path / "plots_b" / "metrics.json").read_text() == (
        tmp_path / "plots_a" / "metrics.json"
    ).read_text()
    # A retrained checkpoint is evaluated again; so is a kept one on a store recorded again, with the same knobs
    # (new episode ids) or with others.
    _, _, kept_retrained = run("plots_c", kept=False)
    store.episode_ids = lambda: ["20261122T040000Z-c", "20261122T040012Z-d"]
    _, _, kept_rerecorded = run("plots_d", kept=True)
    (work / "recording.json").write_text(json.dumps({"eval": {**knobs, "retry": 0.3}}))
    other, _, kept_other = run("plots_e", kept=True)
    assert (len(evaluated), kept_retrained, kept_rerecorded, kept_other) == (4, False, False, False)
    assert other["episodes"] == [{"n": 4}]
