"""Policy checkpoints: round trip of weights, config, normalisation and provenance; versions; bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from policy_helpers import fake_observation, tiny_config, unit_normalizer

from policy.builtin import BuiltinPolicyModel
from policy.checkpoint import (
    PolicyCheckpointError,
    list_versions,
    load_model,
    load_policy,
    read_meta,
    resolve_checkpoint,
    save_policy,
)
from policy.config import PolicyConfig
from policy.deploy import Policy


def test_round_trip_keeps_weights_config_stats_and_labelling_run(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(cfg_beta=1.5)
    model = BuiltinPolicyModel(config)
    normalizer = unit_normalizer(config)
    folder = save_policy(model, normalizer, tmp_path, 0, labelling_run="lab3", extra={"extraction": "recap"})
    assert folder.name == "v000000" and sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "meta.json",
        "model.safetensors",
        "norm_stats.json",
    ]
    loaded, loaded_normalizer, meta = load_model(tmp_path)
    assert loaded.config == config
    assert meta["labelling_run"] == "lab3" and meta["extraction"] == "recap" and meta["version"] == 0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    torch.testing.assert_close(loaded_normalizer.action_std, normalizer.action_std)

    observation = fake_observation(config)
    original = Policy(model, normalizer)
    restored = Policy.load(tmp_path)
    assert restored.labelling_run == "lab3" and restored.version == 0
    for policy in (original, restored):
        policy.reset(seed=3)
    np.testing.assert_allclose(restored.act(observation), original.act(observation), rtol=1e-5, atol=1e-6)


def test_versions_newest_wins_and_overrides_apply(tmp_path):
    config = tiny_config()
    for version in (0, 1):
        save_policy(
            BuiltinPolicyModel(config), unit_normalizer(config), tmp_path, version, labelling_run=None
        )
    with pytest.raises(FileExistsError):
        save_policy(BuiltinPolicyModel(config), unit_normalizer(config), tmp_path, 1, labelling_run=None)
    assert list_versions(tmp_path) == [0, 1]
    assert resolve_checkpoint(tmp_path).name == "v000001"
    policy = load_policy(tmp_path / "v000000", deploy_indicator="negative", cfg_beta=2.0)
    assert (
        policy.version == 0 and policy.config.deploy_indicator == "negative" and policy.config.cfg_beta == 2.0
    )
    assert policy.labelling_run is None


def test_incomplete_or_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(PolicyCheckpointError, match="does not exist"):
        load_model(tmp_path / "nothing")
    config = tiny_config()
    folder = save_policy(BuiltinPolicyModel(config), unit_normalizer(config), tmp_path, 0, labelling_run=None)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(PolicyCheckpointError, match="format"):
        read_meta(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(PolicyCheckpointError, match="incomplete"):
        load_model(folder)
    assert list_versions(tmp_path) == []


def test_a_config_stored_before_relative_actions_and_keypoints_rebuilds_the_old_model():
    stored = PolicyConfig().to_dict()
    del stored["relative_action_dims"], stored["encoder_keypoints"]
    config = PolicyConfig.from_dict(stored)
    assert config.relative_action_dims == [] and config.encoder_keypoints is False
