import json
from dataclasses import fields

import pytest
import torch
from latent_helpers import random_latents

from valuemodel.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_version,
    list_versions,
    load_checkpoint,
    load_norm_stats,
    save_checkpoint,
)
from valuemodel.config import KIND_FIELDS, ValueModelConfig
from valuemodel.interface import ValueBatch
from valuemodel.static import StaticValueModel
from valuemodel.synthetic import synthetic_config
from valuemodel.viva import ViVaModel

NORM = {"state_low": torch.tensor([-1.0, 0.0]), "state_high": [1.0, 2.0], "note": "min-max"}


def test_viva_round_trip(tiny_viva, tmp_path):
    folder = save_checkpoint(tiny_viva, tmp_path / "ckpt", version=3, norm_stats=NORM)
    assert folder.name == "v000003"
    assert sorted(p.name for p in folder.iterdir()) == [
        "backbone", "config.json", "meta.json", "model.safetensors", "norm_stats.json"
    ]  # fmt: skip
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, ViVaModel) and loaded.config == tiny_viva.config
    batch = ValueBatch(task_id=torch.zeros(2, dtype=torch.long), state=torch.zeros(2, 6),
                       image_latents=random_latents(tiny_viva.config, 2, tiny_viva.latent_shape))  # fmt: skip
    assert torch.equal(loaded.predict(batch).value, tiny_viva.predict(batch).value)
    assert load_norm_stats(folder) == {"state_low": [-1.0, 0.0], "state_high": [1.0, 2.0], "note": "min-max"}
    assert checkpoint_version(tmp_path / "ckpt") == 3
    with pytest.raises(FileExistsError):
        save_checkpoint(tiny_viva, tmp_path / "ckpt", version=3, norm_stats=NORM)


def test_latest_version_and_errors(tmp_path):
    torch.manual_seed(0)
    model = StaticValueModel(synthetic_config("tiny", "static", static_channels=4, static_hidden=16))
    root = tmp_path / "run"
    save_checkpoint(model, root, 1, {})
    with torch.no_grad():
        model.head[-1].bias.fill_(0.5)
    save_checkpoint(model, root, 2, {})
    (root / "v000007").mkdir()  # a half-written version from a crashed writer is ignored
    assert list_versions(root) == [1, 2]
    latest = load_checkpoint(root)
    assert torch.equal(latest.head[-1].bias, model.head[-1].bias)

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no complete"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(root / "v000007")
    (root / "v000001" / "norm_stats.json").unlink()
    with pytest.raises(CheckpointError, match="norm_stats.json"):
        load_checkpoint(root / "v000001")
    # A version from a later layout is refused by name; one from before formats were written loads.
    meta_path = root / "v000002" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == CHECKPOINT_FORMAT
    meta_path.write_text(json.dumps({**meta, "format": CHECKPOINT_FORMAT + 1}))
    with pytest.raises(CheckpointError, match=r"format 3, newer than this vivarl reads \(2\): update vivarl"):
        load_checkpoint(root)
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "format"}))
    assert torch.equal(load_checkpoint(root).head[-1].bias, model.head[-1].bias)


def test_config_json_round_trip(tmp_path):
    cfg = ValueModelConfig.preset("tiny", "wvm", cameras=["a", "b", "c"], tasks=["x", "y"])
    cfg.save_json(tmp_path / "c.json")
    assert ValueModelConfig.load_json(tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    with pytest.raises(ValueError, match="unknown"):
        ValueModelConfig.from_dict({**data, "bogus": 1})
    with pytest.raises(ValueError, match="pretrained_dir"):
        ValueModelConfig.preset("wan2.2-ti2v-5b")


def test_kind_fields_are_what_the_kind_reads():
    names = {f.name for f in fields(ValueModelConfig)}
    assert all(set(kind_names) <= names for kind_names in KIND_FIELDS.values())
    static = ValueModelConfig.preset("tiny", "static")
    assert (
        static.kind_fields()
        == ValueModelConfig.preset("tiny", "static", rewind_prob=0.9, shift=2.0).kind_fields()
    )
    assert static.kind_fields() != ValueModelConfig.preset("tiny", "static", static_hidden=8).kind_fields()
    wvm = ValueModelConfig.preset("tiny", "wvm")
    assert wvm.kind_fields() == ValueModelConfig.preset("tiny", "wvm", future_state_weight=0.1).kind_fields()
    assert wvm.kind_fields() != ValueModelConfig.preset("tiny", "wvm", rewind_prob=0.9).kind_fields()
    assert wvm.kind_fields() != ValueModelConfig.preset("tiny", "wvm", shift=2.0).kind_fields()
    viva = ValueModelConfig.preset("tiny", "viva")
    assert (
        viva.kind_fields() != ValueModelConfig.preset("tiny", "viva", future_state_weight=0.1).kind_fields()
    )
    assert {"cameras", "state_dim", "horizon"} <= set(static.kind_fields()) & set(wvm.kind_fields())
