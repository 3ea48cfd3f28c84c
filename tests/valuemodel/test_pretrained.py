"""The wan2.2-ti2v-5b code path, exercised on a tiny model saved in the real diffusers folder layout."""

import json
import shutil

import pytest
import torch
from latent_helpers import random_latents

from valuemodel.backbone import (
    ARCHITECTURE_DIR,
    TINY_TRANSFORMER,
    TINY_VAE,
    WAN22_5B_VAE,
    Backbone,
    FrozenVAE,
    TaskText,
    encode_task_texts,
    vae_spatial_factor,
)
from valuemodel.config import ValueModelConfig
from valuemodel.factory import build_value_model
from valuemodel.interface import ValueBatch
from valuemodel.synthetic import synthetic_config
from valuemodel.viva import ViVaModel

TASKS = ["put the item in the box", "close the lid"]
# The 5B VAE's downsampling and patchify with narrow layers.
NARROW_VAE = dict(base_dim=16, decoder_base_dim=16, num_res_blocks=1)
# The pipeline index of the real folder: which library and class each subfolder holds.
MODEL_INDEX = {
    "_class_name": "WanPipeline",
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
}


def write_tiny_text_encoder(root):
    """A UMT5 encoder and a T5 tokenizer of the real folder's kind: a SentencePiece-style unigram model (whole
    words as "▁word" pieces, single characters as the fallback), an appended </s>, tokenizer_config naming
    T5Tokenizer. It loads through tokenizer.json, as the real one does where sentencepiece is not installed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

    words = sorted({w for t in TASKS for w in t.split()})
    chars = sorted({c for t in TASKS for c in t if c != " "})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in words] + [(c, -3.0) for c in chars]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    T5TokenizerFast(tokenizer_object=tok, extra_ids=0).save_pretrained(root / "tokenizer")
    config_path = root / "tokenizer" / "tokenizer_config.json"
    config_path.write_text(
        json.dumps({**json.loads(config_path.read_text()), "tokenizer_class": "T5Tokenizer"})
    )
    cfg = UMT5Config(vocab_size=len(pieces), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
    UMT5EncoderModel(cfg).save_pretrained(root / "text_encoder")


@pytest.fixture(scope="module")
def tiny_wan_dir(tmp_path_factory):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("Wan2.2-TI2V-5B-Diffusers")
    # The 5B's VAE (Wan2.2's residual, patchified one) with narrow layers, and latent statistics that are not the
    # identity, so that loading must read them from the folder.
    z_dim = WAN22_5B_VAE["z_dim"]
    statistics = dict(latents_mean=torch.linspace(-0.5, 0.5, z_dim).tolist(), latents_std=[2.0] * z_dim)
    vae = AutoencoderKLWan(**{**WAN22_5B_VAE, **NARROW_VAE, **statistics})
    transformer = WanTransformer3DModel(**{**TINY_TRANSFORMER, "in_channels": z_dim, "out_channels": z_dim})
    # Sharded with an index file, as the real transformer is.
    transformer.save_pretrained(root / "transformer", max_shard_size="300KB")
    assert len(list((root / "transformer").glob("*.safetensors"))) > 1
    vae.save_pretrained(root / "vae")
    write_tiny_text_encoder(root)
    (root / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    return root, transformer, vae


def config_for(root):
    return synthetic_config(
        "wan2.2-ti2v-5b",
        "viva",
        pretrained_dir=str(root),
        image_height=64,
        image_width=64,
        tasks=TASKS,
        text_len=8,
    )


def batch_for(model):
    return ValueBatch(
        task_id=torch.tensor([0, 1, 1]),
        image_latents=random_latents(model.config, 3, model.latent_shape),
        state=torch.linspace(-1, 1, 18).reshape(3, 6),
    )


@pytest.mark.parametrize("preset", ["tiny", "wan2.2-ti2v-5b"])
def test_vae_spatial_factor_is_what_the_encoder_does(preset):
    from diffusers import AutoencoderKLWan

    # The 5B VAE's downsampling and patchify with narrow layers: the factor depends on those alone.
    config = TINY_VAE if preset == "tiny" else {**WAN22_5B_VAE, **NARROW_VAE}
    torch.manual_seed(0)
    frozen = FrozenVAE(AutoencoderKLWan(**config))
    factor = vae_spatial_factor(config)
    assert vae_spatial_factor(frozen.vae.config) == factor
    assert factor == (8 if preset == "tiny" else WAN22_5B_VAE["scale_factor_spatial"])
    latents = frozen.encode(torch.rand(1, 3, 64, 96), 64, 96)
    assert (
        tuple(latents.shape[1:])
        == (config["z_dim"], 64 // factor, 96 // factor)
        == frozen.latent_shape(64, 96)
    )


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="transformer"):
        ViVaModel(config_for(tmp_path))


def test_from_pretrained_round_trip(tiny_wan_dir, tmp_path):
    root, transformer, vae = tiny_wan_dir
    config = config_for(root)
    assert config.text_encoder == "t5"
    loaded = ViVaModel(config)
    embeddings = encode_task_texts(root, TASKS, 8)
    reference = ViVaModel(
        config, backbone=Backbone(transformer, FrozenVAE(vae), TaskText("t5", len(TASKS), 8, 64, embeddings))
    )
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.vae.latents_std.flatten().tolist() == pytest.approx(vae.config.latents_std)
    assert loaded.latent_shape == (WAN22_5B_VAE["z_dim"], 4, 4), "64x64 images, 16x fewer latent cells a side"
    batch = batch_for(loaded)
    expected = reference.predict(batch)
    got = loaded.predict(batch)
    assert torch.equal(got.value, expected.value) and torch.equal(got.future_state, expected.future_state)

    # T5 embeddings: one per task, padding positions zero, differing between tasks.
    cached = loaded.text.cached
    assert cached.shape == (2, 8, 64)
    n_tokens = len(TASKS[1].split()) + 1  # a piece per word, then </s>
    assert torch.all(cached[1, n_tokens:] == 0) and torch.all(cached[1, :n_tokens].abs().sum(-1) > 0)
    assert not torch.equal(cached[0], cached[1])

    # Saving and reloading rebuilds the architecture from the folder's configs without reading its weights.
    loaded.save(tmp_path / "model")
    again = ViVaModel.load(tmp_path / "model")
    assert torch.equal(again.predict(batch).value, expected.value)
    # A checkpoint saved before checkpoints kept their backbone's configs still loads, from pretrained_dir.
    shutil.rmtree(tmp_path / "model" / ARCHITECTURE_DIR)
    assert torch.equal(ViVaModel.load(tmp_path / "model").predict(batch).value, expected.value)


@pytest.mark.parametrize("kind", ["viva", "wvm"])
def test_a_checkpoint_loads_after_its_pretrained_folder_is_gone(tiny_wan_dir, tmp_path, kind):
    # The lab's backbone folder moves (a new disk, a cleaned /tmp); the value checkpoints trained on it must not
    # depend on it: the weights are in the checkpoint and the backbone's architecture is kept beside them.
    moved = tmp_path / "Wan2.2-TI2V-5B-Diffusers"
    shutil.copytree(tiny_wan_dir[0], moved)
    config = ValueModelConfig(**{**config_for(moved).to_dict(), "kind": kind})
    model = build_value_model(config)
    model.save(tmp_path / "ckpt")
    shutil.rmtree(moved)
    loaded = type(model).load(tmp_path / "ckpt")
    assert loaded.config == model.config
    reference = model.state_dict()
    assert loaded.state_dict().keys() == reference.keys()
    assert all(torch.equal(tensor, reference[name]) for name, tensor in loaded.state_dict().items())
    if kind == "viva":
        batch = batch_for(model)
        assert torch.equal(loaded.predict(batch).value, model.predict(batch).value)


def test_task_texts_encode_in_the_models_dtype(tiny_wan_dir):
    # The 5B config runs in bfloat16; its UMT5-XXL encoder loads in bfloat16 too (half of 23 GB), and the cached
    # embeddings it leaves behind are float32 and close to a float32 encoder's.
    root = tiny_wan_dir[0]
    full = encode_task_texts(root, TASKS, 8)
    half = encode_task_texts(root, TASKS, 8, torch.bfloat16)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    assert torch.allclose(half, full, atol=0.05 * full.abs().max().item())
