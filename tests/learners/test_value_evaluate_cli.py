"""vivarl-eval-value on a tiny store: a checkpoint in, a table (markdown + JSON) and PNG plots out."""

from __future__ import annotations

import json

import pytest
import torch

from learners.evaluate_value import main
from learners.value_data import write_synthetic_store
from learners.value_learner import ValueLearner, ValueLearnerConfig
from valuemodel.config import ValueModelConfig

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["static", "viva"])
def test_eval_cli_writes_table_json_and_plots(tmp_path, kind, capsys):
    store, kind_of = write_synthetic_store(
        str(tmp_path / "store"), ["expert", "retry", "hesitation", "failure"]
    )
    config = ValueLearnerConfig(
        store_url=str(tmp_path / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=4, batch_size=8,
        task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    model_config = ValueModelConfig.preset("tiny", kind, horizon=5, image_height=32, image_width=32)
    ValueLearner(config, model_config).refit(0)
    (tmp_path / "tags.json").write_text(json.dumps(kind_of))

    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--store", str(tmp_path / "store"),
                 "--out", str(tmp_path / "eval"), "--tags", str(tmp_path / "tags.json"), "--name", kind]) == 0  # fmt: skip
    assert f"| {kind} |" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    summary = report["summary"][kind]
    assert summary["episodes"] == 4 and summary["episodes_hesitation"] == 1 and summary["episodes_retry"] == 1
    assert {r["episode_id"] for r in report["episodes"]} == set(kind_of)
    assert all(len(r) > 5 for r in report["episodes"])
    assert (tmp_path / "eval" / "metrics.md").read_text().count("|") > 10
    assert (tmp_path / "eval" / "value_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_cli_reads_a_stored_value_column(tmp_path):
    store, _ = write_synthetic_store(str(tmp_path / "store"), ["expert", "failure"])
    config = ValueLearnerConfig(
        store_url=str(tmp_path / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=2, batch_size=8,
        task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    learner = ValueLearner(config, ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32))
    learner.label(learner.refit(0))
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--store", str(tmp_path / "store"),
                 "--out", str(tmp_path / "eval"), "--label-key", learner.label_key(1)]) == 0  # fmt: skip
    assert (tmp_path / "eval" / "metrics.json").exists()
