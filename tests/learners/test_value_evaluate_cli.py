"""vivarl-eval-value on a tiny store: a checkpoint in, a table (markdown + JSON) and PNG plots out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from learners.evaluate_value import episode_curves, kinds_from_tags, main
from learners.value_data import synthetic_store_schema, write_synthetic_episode, write_synthetic_store
from learners.value_learner import ValueLearner, ValueLearnerConfig
from replay import ReplayStore, event_tags
from valuemodel.config import ValueModelConfig
from valuemodel.synthetic import make_episode

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
    episode_plots = sorted(p.stem for p in (tmp_path / "eval" / "episodes").glob("*.png"))
    assert episode_plots == sorted(kind_of), "one plot per episode, named by its id"


def test_eval_cli_reads_a_stored_value_column(tmp_path):
    store, _ = write_synthetic_store(str(tmp_path / "store"), ["expert", "failure"])
    config = ValueLearnerConfig(
        store_url=str(tmp_path / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=2, batch_size=8,
        task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    learner = ValueLearner(config, ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32))
    learner.label(learner.refit(0))
    # Values already in the store need no checkpoint; --no-episode-plots leaves the overview only.
    assert main(["--store", str(tmp_path / "store"), "--out", str(tmp_path / "eval"),
                 "--label-key", learner.label_key(1), "--no-episode-plots"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["model"] == learner.label_key(1) and len(report["episodes"]) == 2
    assert not (tmp_path / "eval" / "episodes").exists()
    with pytest.raises(SystemExit):
        main(["--store", str(tmp_path / "store"), "--out", str(tmp_path / "eval2")])


def test_a_checkpoint_is_refused_on_a_store_it_cannot_read(tmp_path):
    write_synthetic_store(str(tmp_path / "store"), ["expert", "failure"])
    config = ValueLearnerConfig(
        store_url=str(tmp_path / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=2, batch_size=8,
        task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    # Cameras and state width left to the robot are taken from the store the learner trains on.
    open_config = ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32)
    assert open_config.left_to_robot() == ["cameras", "state_dim"]
    ValueLearner(config, open_config).refit(0)
    saved = json.loads((tmp_path / "ckpt" / "v000001" / "config.json").read_text())
    assert (saved["cameras"], saved["state_dim"]) == (["front", "wrist"], 6)

    other_robot = ReplayStore.create(
        str(tmp_path / "other"), synthetic_store_schema(cameras=("front", "top"), image_size=32, state_dim=4)
    )
    write_synthetic_episode(
        other_robot, make_episode(np.random.default_rng(0), cameras=("front", "top"), image_size=32, state_dim=4),
        task="stack cups",
    )  # fmt: skip
    args = [
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--store",
        str(tmp_path / "other"),
        "--out",
        str(tmp_path / "e"),
    ]
    with pytest.raises(
        ValueError, match=r"cameras \['wrist'\].*state_dim is 6.* 4 state values.*tasks \['stack cups'\]"
    ):
        main(args)
    assert not (tmp_path / "e").exists(), "refused before anything is written"


def test_recorded_tags_give_the_kinds_where_no_tags_file_does(tmp_path):
    # The actors record the simulated expert's event kinds with each episode; pauses cannot be inferred from
    # ground truth, so without these tags an evaluation of the loop's store would have no Hes-RMSE.
    store = ReplayStore.create(str(tmp_path / "store"), synthetic_store_schema(image_size=32))
    rng = np.random.default_rng(0)
    ids = {
        tags: write_synthetic_episode(
            store, make_episode(rng, kind, image_size=32), task="synthetic", tags=tags
        )
        for kind, tags in [("hesitation", ("pause", "take_over")), ("retry", ("retry",)), ("expert", ())]
    }
    curves = episode_curves(store, lambda e: np.zeros(store.record(e).meta.length), list(ids.values()))
    kinds = {curve.episode_id: curve.kinds for curve in curves}
    assert kinds[ids[("pause", "take_over")]] == ("hesitation",)
    assert kinds[ids[("retry",)]] == ("retry",)
    assert kinds[ids[()]] == (), "no tags recorded: left to infer_kinds"
    # A tags file still wins; a failed episode with pauses is both.
    explicit = episode_curves(store, lambda e: np.zeros(3), [ids[("retry",)]], {ids[("retry",)]: ("expert",)})
    assert explicit[0].kinds == ("expert",)
    assert kinds_from_tags(event_tags(["pause:lid:12", "retry_abandoned:lid", "drop"]), False) == (
        "failure",
        "hesitation",
    )
