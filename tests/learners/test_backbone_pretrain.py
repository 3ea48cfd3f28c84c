"""Backbone pretraining on recorded video, and its folder loaded by the value models through ``pretrained_dir``."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from learners.backbone_pretrain import (
    BackbonePretrainConfig,
    clip_indices,
    main,
    pretrain_backbone,
    read_video,
)
from learners.value_data import write_synthetic_store
from replay import ReplayStore
from valuemodel.interface import ValueBatch
from valuemodel.synthetic import synthetic_config
from valuemodel.viva import ViVaModel


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    store, _ = write_synthetic_store(
        str(root / "store"), ["expert", "retry"], image_size=32, length_range=(12, 14)
    )
    config = BackbonePretrainConfig(
        store_url=str(root / "store"), out_dir=str(root / "wan"),
        image_height=32, image_width=32, vae_steps=4, vae_batch_size=4, video_steps=4, video_batch_size=4,
        frame_stride=3, transformer_overrides={"num_layers": 3},
    )  # fmt: skip
    latents = []
    report = pretrain_backbone(config, latents.append)
    return root, store, report, latents


def test_writes_the_diffusers_layout_with_latent_statistics(pretrained):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    root, _, report, _ = pretrained
    assert (root / "wan" / "vae" / "config.json").is_file()
    assert (root / "wan" / "transformer" / "config.json").is_file()
    assert np.isfinite(report["vae_loss"]) and np.isfinite(report["video_loss"])
    vae = AutoencoderKLWan.from_pretrained(root / "wan" / "vae")
    # The latent statistics were measured on the data, not left at the preset's 0 / 1.
    z_dim = vae.config.z_dim
    assert vae.config.latents_mean != [0.0] * z_dim and vae.config.latents_std != [1.0] * z_dim
    WanTransformer3DModel.from_pretrained(root / "wan" / "transformer")
    info = json.loads((root / "wan" / "pretrain.json").read_text())
    assert info["cameras"] == ["front", "wrist"]


def test_tiny_value_model_loads_the_pretrained_folder(pretrained):
    from diffusers import AutoencoderKLWan

    root, _, _, _ = pretrained
    config = synthetic_config(
        "tiny", "viva", pretrained_dir=str(root / "wan"), image_height=32, image_width=32
    )
    model = ViVaModel(config)
    # The architecture comes from the folder (3 blocks, not the tiny preset's 2): no override is needed here.
    assert len(model.transformer.blocks) == 3
    saved = AutoencoderKLWan.from_pretrained(root / "wan" / "vae").state_dict()
    for name, tensor in saved.items():
        assert torch.equal(model.vae.vae.state_dict()[name], tensor), name
    assert model.vae.latents_std.flatten().tolist() == pytest.approx(
        AutoencoderKLWan.load_config(root / "wan" / "vae")["latents_std"]
    )
    images = {c: torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8) for c in config.cameras}
    prediction = model.predict(ValueBatch(task_id=torch.zeros(2, dtype=torch.long), images=images,
                                          state=torch.zeros(2, config.state_dim)))  # fmt: skip
    assert prediction.value.shape == (2,) and torch.isfinite(prediction.value).all()


def test_clips_stay_inside_their_episode(pretrained):
    _, store, _, _ = pretrained
    video = read_video(store, ["front"], 32, 32, max_frames=10_000)
    anchors = np.arange(len(video.frames))
    index = clip_indices(video, anchors, clip_frames=3, stride=5)
    assert (index >= video.episode_start[anchors, None]).all()
    assert (index < video.episode_end[anchors, None]).all()
    assert (np.diff(index, axis=1) >= 0).all()


def test_empty_store_and_unknown_camera_are_clear_errors(tmp_path, pretrained):
    _, store, _, _ = pretrained
    ReplayStore.create(str(tmp_path / "empty"), store.schema)
    with pytest.raises(ValueError, match="no committed episodes"):
        pretrain_backbone(
            BackbonePretrainConfig(store_url=str(tmp_path / "empty"), out_dir=str(tmp_path / "o"))
        )
    with pytest.raises(ValueError, match="not in store"):
        main(["--store", str(pretrained[0] / "store"), "--out", str(tmp_path / "o"), "--cameras", "top"])


def test_cli_passes_transformer_overrides_and_rejects_bad_json(tmp_path, pretrained):
    from diffusers import WanTransformer3DModel

    store_url = str(pretrained[0] / "store")
    args = ["--store", store_url, "--out", str(tmp_path / "wan"), "--image-size", "32", "--vae-steps", "2",
            "--vae-batch-size", "2", "--video-steps", "2", "--transformer-overrides", '{"num_layers": 1}']  # fmt: skip
    assert main(args) == 0
    assert WanTransformer3DModel.load_config(tmp_path / "wan" / "transformer")["num_layers"] == 1
    with pytest.raises(SystemExit):
        main(
            ["--store", store_url, "--out", str(tmp_path / "x"), "--transformer-overrides", "{num_layers: 1}"]
        )


def test_the_value_learners_cache_starts_with_the_pretrainings_latents(pretrained, tmp_path):
    from learners.value_learner import ValueLearner, ValueLearnerConfig
    from valuemodel.config import ValueModelConfig

    root, store, _, (frames,) = pretrained
    total = sum(store.record(e).meta.length for e in store.episode_ids())
    assert len(frames.keys) == total and frames.latents.shape[:2] == (total, 2)
    assert frames.cameras == ["front", "wrist"] and frames.image_size == (32, 32)

    def learner(**model_fields):
        config = ValueLearnerConfig(
            store_url=str(root / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=1, batch_size=4,
            task_names=["synthetic"], log_every=0, device="cpu",
        )  # fmt: skip
        model = ValueModelConfig.preset("tiny", "viva", image_height=32, image_width=32, **model_fields)
        value_learner = ValueLearner(config, model)
        value_learner.use_backbone(str(root / "wan"))
        return value_learner

    primed = learner()
    assert primed.prime_latent_cache(frames) == total
    model = primed._new_model(warm_start=False)
    cache = primed._latent_cache(model)
    assert len(cache) == 2 * total
    # What the cache holds is what the value model's own encoder makes of the same frames.
    episode_id = store.episode_ids()[1]
    images = store.read_episode(episode_id, ["images/front", "images/wrist"])
    steps = [0, 5]
    encoded = model.encode_images(
        {c: torch.from_numpy(images[f"images/{c}"][steps]).permute(0, 3, 1, 2) for c in ("front", "wrist")}
    )
    for camera in ("front", "wrist"):
        cached = torch.stack([cache.entries[(episode_id, s, camera)] for s in steps])
        torch.testing.assert_close(cached, encoded[camera], atol=1e-4, rtol=1e-4)
    # A model reading fewer cameras gets those; one that would encode them otherwise gets none.
    assert learner(cameras=["front"]).prime_latent_cache(frames) == total
    other_size = ValueLearner(primed.config, replace(primed.model_config, image_height=16, image_width=16))
    assert other_size.prime_latent_cache(frames) == 0


def test_a_restarted_value_learner_goes_on_from_the_backbone_chosen_before(pretrained, tmp_path):
    from learners.value_learner import ValueLearner, ValueLearnerConfig
    from valuemodel.config import ValueModelConfig

    root, _, _, _ = pretrained
    config = ValueLearnerConfig(
        store_url=str(root / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=1, batch_size=4,
        task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    model = ValueModelConfig.preset("tiny", "viva", image_height=32, image_width=32)
    assert not ValueLearner(config, model).model_config.pretrained_dir
    ValueLearner(config, model).use_backbone(str(root / "wan"))
    # A new process with the same configs (Ray's restart of the learner, a resumed run) reads the choice back.
    assert ValueLearner(config, model).model_config.pretrained_dir == str(root / "wan")
    other_run = replace(config, checkpoint_root=str(tmp_path / "other"))
    assert not ValueLearner(other_run, model).model_config.pretrained_dir
