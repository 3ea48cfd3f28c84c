"""The value-model results script keeps a trained checkpoint under --reuse only when it was made the same way, and
its evaluation only when it was of the same held-out store; its archive (results_archive.py) gives back only runs
and backbones made the same way from the same episodes."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import results_valuemodel  # noqa: E402
from results_archive import (  # noqa: E402
    archive_backbone,
    archive_run,
    archived_backbone_key,
    restore_archived_backbone,
    restore_archived_run,
)
from results_valuemodel import evaluate_or_keep, run_data, training_record  # noqa: E402

from learners.backbone_pretrain import BackbonePretrainConfig  # noqa: E402
from learners.value_learner import ValueLearnerConfig  # noqa: E402
from replay import Outcome, ReplayStore  # noqa: E402
from robot_io.config import ExpertConfig  # noqa: E402
from valuemodel.config import ValueModelConfig  # noqa: E402
from valuemodel.evaluate import SUMMARY_COLUMNS  # noqa: E402


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
    # A static baseline is the same model whatever the fields only ViVa and WVM read.
    static = ValueModelConfig.preset("tiny", "static")
    assert training_record(learner, static, None) == training_record(
        learner, replace(static, rewind_prob=0.9), None
    )


def test_wvm_overrides_must_name_config_fields(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["results_valuemodel.py", "--wvm-overrides", '{"prefix_frame": 0}'])
    with pytest.raises(SystemExit):
        results_valuemodel.main()
    assert "unknown ValueModelConfig fields ['prefix_frame']" in capsys.readouterr().err


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


class FakeStore:
    """A replay store as the archive reads one: ids (recording time first) and each episode's meta."""

    def __init__(self, ids: list[str], lengths: list[int]) -> None:
        self.ids, self.lengths = ids, lengths

    def episode_ids(self) -> list[str]:
        return list(reversed(self.ids))  # any order: the archive sorts them

    def record(self, episode_id: str) -> SimpleNamespace:
        length = self.lengths[self.ids.index(episode_id)]
        return SimpleNamespace(meta=SimpleNamespace(length=length, outcome=Outcome.SUCCESS, tags=("retry",)))


def test_an_archived_run_comes_back_for_the_same_episodes_recorded_again(tmp_path, monkeypatch):
    # A new session records the episodes again (new ids, same content): a run archived from another machine's
    # folders is restored, its rows paired with this store's ids by recording order.
    first = FakeStore(["20261121T1900Z-a", "20261121T1901Z-b"], [300, 250])
    again = FakeStore(["20261122T0600Z-c", "20261122T0601Z-d"], [300, 250])
    changed = FakeStore(["20261122T0700Z-e", "20261122T0701Z-f"], [300, 251])
    stores = {}
    # Work folder d has a's held-out episodes but other training episodes.
    for work, store, train in (
        ("a", first, first),
        ("b", again, first),
        ("c", changed, first),
        ("d", first, changed),
    ):
        stores.update({str(tmp_path / work / "eval"): store, str(tmp_path / work / "train"): train})
        (tmp_path / work).mkdir()
        knobs = {"eval": {"episodes": 2, "retry": 0.6}, "train": {"episodes": 2, "retry": 0.0}}
        (tmp_path / work / "recording.json").write_text(json.dumps(knobs))
    monkeypatch.setattr(results_valuemodel, "ReplayStore", SimpleNamespace(open=stores.__getitem__))
    data = run_data(tmp_path / "a")
    assert run_data(tmp_path / "b") == data
    assert run_data(tmp_path / "c") != data and run_data(tmp_path / "d") != data

    model = ValueModelConfig.preset("tiny", "wvm", cameras=["front", "wrist"])
    backbone = {"vae_loss": 0.0048, "seconds": 1167.9}

    def record_at(work: Path, **changes):
        learner = ValueLearnerConfig(store_url=str(work / "train"), checkpoint_root=str(work / "c"), seed=0)
        return training_record(learner, replace(model, pretrained_dir=str(work / "wan"), **changes), backbone)

    out = tmp_path / "plots" / "value_wvm"
    out.mkdir(parents=True)
    rows = [{"episode_id": first.ids[1], "retry_voc": 0.25}, {"episode_id": first.ids[0], "retry_voc": 0.75}]
    summary = {"WVM": {**dict.fromkeys(SUMMARY_COLUMNS, 0.5), "episodes": 2}}
    report = {"model": "WVM", "settings": {"error_window": 5}, "summary": summary, "episodes": rows}
    (out / "metrics.json").write_text(json.dumps(report))
    (out / "value_curves.png").write_bytes(b"png")
    archive = tmp_path / "archive"
    record = record_at(tmp_path / "a")
    archive_run(archive, "value_wvm_s0", record, data, first, out, (9.0, 2.0, {}), plotted=True)

    restored_out = tmp_path / "plots_b" / "value_wvm"
    b_record = record_at(tmp_path / "b")
    restored = restore_archived_run(archive, "value_wvm_s0", b_record, data, again, restored_out, True)
    assert restored is not None
    got, timing = restored
    assert timing == (9.0, 2.0, {}) and got["summary"] == summary and got["settings"] == {"error_window": 5}
    assert got["episodes"] == [
        {"episode_id": again.ids[1], "retry_voc": 0.25},
        {"episode_id": again.ids[0], "retry_voc": 0.75},
    ]
    assert json.loads((restored_out / "metrics.json").read_text()) == got
    assert "| WVM |" in (restored_out / "metrics.md").read_text()
    assert (restored_out / "value_curves.png").read_bytes() == b"png"

    # Not restored: a run made another way, from other episodes, of another seed, or, for the section's folder,
    # without the plot it needs.
    other_model = record_at(tmp_path / "b", rewind_prob=0.5)
    other_data = run_data(tmp_path / "c")
    x = tmp_path / "x"
    assert restore_archived_run(archive, "value_wvm_s0", other_model, data, again, x, False) is None
    assert restore_archived_run(archive, "value_wvm_s0", record, other_data, changed, x, False) is None
    assert restore_archived_run(archive, "value_wvm_s1", record, data, again, x, False) is None
    archive_run(archive, "value_wvm_s2", record, data, first, out, (9.0, 2.0, {}), plotted=False)
    assert restore_archived_run(archive, "value_wvm_s2", record, data, again, x, True) is None
    assert restore_archived_run(archive, "value_wvm_s2", record, data, again, x, False) is not None


def test_an_archived_backbone_is_keyed_by_its_recipe_and_data_not_by_its_folders(tmp_path):
    train = {"knobs": {"episodes": 24, "retry": 0.0}, "episodes_sha256": "ab12"}
    config = BackbonePretrainConfig(
        store_url="/tmp/a/train", out_dir="/tmp/a/wan", video_steps=2000, threads=2
    )
    key = archived_backbone_key(config, train)
    moved = replace(config, store_url="/tmp/b/train", out_dir="/tmp/b/wan", threads=0)
    assert archived_backbone_key(moved, train) == key
    assert archived_backbone_key(replace(config, video_steps=1000), train) != key
    assert archived_backbone_key(config, {**train, "episodes_sha256": "cd34"}) != key

    def pretrained(folder: Path, video_loss: float) -> Path:
        for part in ("transformer", "vae"):
            (folder / part).mkdir(parents=True)
            (folder / part / "config.json").write_text(json.dumps({"part": part}))
        report = {"frames": 10.0, "vae_loss": 0.005, "video_loss": video_loss, "seconds": 60.0}
        (folder / "pretrain.json").write_text(json.dumps(report))
        return folder

    made = pretrained(tmp_path / "a" / "wan", 0.177)
    archive = tmp_path / "archive"
    assert not restore_archived_backbone(archive, key, tmp_path / "b" / "wan")
    assert archive_backbone(archive, key, made)
    assert archive_backbone(archive, key, made)  # already there: still this one
    assert restore_archived_backbone(archive, key, tmp_path / "b" / "wan")
    for name in ("transformer/config.json", "vae/config.json", "pretrain.json"):
        assert (tmp_path / "b" / "wan" / name).read_text() == (made / name).read_text()
    # Another pretraining of the same recipe (another machine's losses) is not this one, and is not archived.
    assert not archive_backbone(archive, key, pretrained(tmp_path / "c" / "wan", 0.165))
    assert json.loads((archive / key / "pretrain.json").read_text())["video_loss"] == 0.177


def test_the_studys_episodes_are_recorded_by_the_robot_actors_loop(tmp_path):
    # Only the actor's runner writes the purpose and the seed; the episode's kinds come from its recorded tags.
    kinds = results_valuemodel.record(str(tmp_path / "eval"), range(3, 4), ExpertConfig(hesitation_prob=1.0))
    store = ReplayStore.open(str(tmp_path / "eval"))
    (meta,) = [record.meta for record in store.records().values()]
    assert (meta.purpose, meta.seed, meta.task, meta.outcome) == ("demo", 3, "box_assembly", Outcome.SUCCESS)
    assert kinds == {meta.episode_id: ["hesitation"]} and "pause" in meta.tags
