"""Build or load the Wan2.2 backbone per size: transformer, frozen VAE and cached task-text embeddings.

``wan2.2-ti2v-5b`` reads the diffusers layout of "Wan-AI/Wan2.2-TI2V-5B-Diffusers" from a local folder
(``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``) and never downloads. ``tiny`` and ``mid`` are
presets of the same classes: random init, or, when ``pretrained_dir`` is set, read from a folder of the same layout
(``transformer/``, ``vae/``), e.g. one written by ``vivarl-pretrain-backbone`` from recorded video. diffusers and transformers are imported inside the functions that need
them, so importing ``valuemodel`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from valuemodel.base import ValueModelBase
from valuemodel.config import ValueModelConfig
from valuemodel.images import fit_images

TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, text_dim=64, freq_dim=32, ffn_dim=128,
    num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=32,
)  # fmt: skip
# 12 latent channels at 8x downsampling keep Wan2.2's 16x compression (3 * 8**2 / 12 = 3 * 16**2 / 48). With 4
# channels (48x) the simulator's flaps and box edges did not survive, and ViVa could not follow a flap being undone.
TINY_VAE: dict[str, Any] = dict(
    base_dim=16, z_dim=12, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
    temperal_downsample=[False, True, True], latents_mean=[0.0] * 12, latents_std=[1.0] * 12,
)  # fmt: skip
MID_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, text_dim=256, freq_dim=256, ffn_dim=2048,
    num_layers=8, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=256,
)  # fmt: skip
MID_VAE: dict[str, Any] = dict(
    base_dim=32, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
    temperal_downsample=[False, True, True], latents_mean=[0.0] * 16, latents_std=[1.0] * 16,
)  # fmt: skip
# The published Wan2.2-TI2V-5B architecture, used only with random_weights (benchmarks without the folder); a real
# run reads the configs (including the VAE's latent statistics) from pretrained_dir.
WAN22_5B_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)  # fmt: skip
WAN22_5B_VAE: dict[str, Any] = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
    scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
)  # fmt: skip
PRESETS = {"tiny": (TINY_TRANSFORMER, TINY_VAE), "mid": (MID_TRANSFORMER, MID_VAE)}
PRETRAINED_SUBDIRS = ("transformer", "vae")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def vae_spatial_factor(vae_config: Any) -> int:
    """Pixels per latent cell along each image side of an ``AutoencoderKLWan`` config (a dict or the model's).

    Computed from the architecture (one halving per downsampling stage, times the patchify of Wan2.2's VAE)
    rather than read from ``scale_factor_spatial``: the VAE's layers never read that field, so a config can carry a
    value that disagrees with what the encoder does.
    """
    return 2 ** len(vae_config["temperal_downsample"]) * int(vae_config.get("patch_size") or 1)


class FrozenVAE(nn.Module):
    """The Wan VAE encoder side, frozen: one image -> one normalised latent frame.

    Wan's causal VAE encodes the first frame of a clip on its own, so a single image maps to exactly one latent
    frame. Latents use the posterior mean (deterministic, hence cacheable) and Wan's per-channel normalisation
    (z - mean) / std from the VAE config.
    """

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.z_dim = int(cfg.z_dim)
        self.spatial_factor = vae_spatial_factor(cfg)
        self.register_buffer(
            "latents_mean", torch.tensor(cfg.latents_mean).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer("latents_std", torch.tensor(cfg.latents_std).view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FrozenVAE:
        # Always eval: the VAE is frozen and must encode the same way in training and at inference.
        super().train(False)
        return self

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        if height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(
                f"image size {height}x{width} must be divisible by the VAE factor {self.spatial_factor}"
            )
        return (self.z_dim, height // self.spatial_factor, width // self.spatial_factor)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, 3, H, W) uint8/[0,1] images -> (N, C, h, w) normalised latents (float32)."""
        dtype = next(self.vae.parameters()).dtype
        pixels = fit_images(images, height, width).to(dtype).unsqueeze(2)
        latents = self.vae.encode(pixels).latent_dist.mode()[:, :, 0].float()
        return (latents - self.latents_mean) / self.latents_std


class TaskText(nn.Module):
    """Text conditioning per task id: (B,) -> (B, L, text_dim) for the transformer's cross-attention.

    ``table``: a learned embedding of L tokens per task (tiny/mid sizes). ``t5``: frozen UMT5 embeddings computed
    once per task string and kept as a buffer, so the 5.7B text encoder never stays in memory and checkpoints carry
    the exact embeddings they were trained with.
    """

    def __init__(
        self, mode: str, num_tasks: int, text_len: int, text_dim: int, embeddings: torch.Tensor | None
    ):
        super().__init__()
        self.mode = mode
        if mode == "table":
            self.table = nn.Parameter(torch.randn(num_tasks, text_len, text_dim))
        else:
            init = embeddings if embeddings is not None else torch.zeros(num_tasks, text_len, text_dim)
            self.register_buffer("cached", init.float())

    @property
    def embeddings(self) -> torch.Tensor:
        return self.table if self.mode == "table" else self.cached

    def forward(self, task_id: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        if task_id.numel() and (int(task_id.min()) < 0 or int(task_id.max()) >= emb.shape[0]):
            raise IndexError(f"task_id out of range [0, {emb.shape[0]}): {task_id.tolist()}")
        return emb[task_id.long()]


def encode_task_texts(
    pretrained_dir: str | Path, tasks: list[str], max_len: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N, max_len, text_dim) float32 UMT5 embeddings of ``tasks``, as the Wan pipelines make them.

    Each prompt is tokenised to max_len, encoded with its attention mask, cut to its real length and zero-padded
    back, so padding positions carry no content. The encoder is loaded in ``dtype`` (the model's: Wan2.2's
    UMT5-XXL is about 23 GB in float32, half that in bfloat16), used and released here.
    """
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = Path(pretrained_dir)
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    encoder = UMT5EncoderModel.from_pretrained(
        root / "text_encoder", local_files_only=True, dtype=dtype
    ).eval()
    tokens = tokenizer(
        tasks, padding="max_length", max_length=max_len, truncation=True, add_special_tokens=True,
        return_attention_mask=True, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        hidden = encoder(tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state.float()
    hidden = hidden * tokens.attention_mask.unsqueeze(-1).to(hidden.dtype)
    del encoder
    return hidden


@dataclass
class Backbone:
    transformer: nn.Module
    vae: FrozenVAE
    text: TaskText


def check_pretrained_dir(pretrained_dir: str | Path, need_text: bool) -> Path:
    root = Path(pretrained_dir)
    subdirs = PRETRAINED_SUBDIRS + (("text_encoder", "tokenizer") if need_text else ())
    missing = [s for s in subdirs if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a diffusers Wan backbone folder: missing {missing} (expected {', '.join(subdirs)} as in "
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers, or transformer/ and vae/ from vivarl-pretrain-backbone)"
        )
    return root


def build_backbone(
    config: ValueModelConfig, load_weights: bool = True, architecture_dir: Path | None = None
) -> Backbone:
    """Transformer, frozen VAE and task text for ``config``.

    ``load_weights=False`` builds the architecture only (random init, zero text embeddings); ``load`` uses it to
    rebuild a checkpoint without reading the pretrained weights twice. ``architecture_dir`` (a checkpoint's
    ``backbone/``, with diffusers ``transformer/`` and ``vae/`` configs) takes the architecture from there instead
    of from ``pretrained_dir``, which may have moved since the checkpoint was trained.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    dtype = torch_dtype(config.dtype)
    if architecture_dir is not None:
        if load_weights:
            raise ValueError("architecture_dir holds configs only; it builds with load_weights=False")
        transformer = WanTransformer3DModel.from_config(
            WanTransformer3DModel.load_config(architecture_dir / "transformer")
        )
        vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(architecture_dir / "vae"))
    elif not config.pretrained_dir and (config.size in PRESETS or config.random_weights):
        transformer_kwargs, vae_kwargs = PRESETS.get(config.size, (WAN22_5B_TRANSFORMER, WAN22_5B_VAE))
        vae = AutoencoderKLWan(**vae_kwargs)
        z_dim = vae_kwargs["z_dim"]
        kwargs = {**transformer_kwargs, "in_channels": z_dim, "out_channels": z_dim}
        if config.size in PRESETS:
            kwargs.update(config.transformer_overrides)
        transformer = WanTransformer3DModel(**kwargs)
    else:
        root = check_pretrained_dir(
            config.pretrained_dir, need_text=config.text_encoder == "t5" and load_weights
        )
        if load_weights:
            transformer = WanTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype)
            vae = AutoencoderKLWan.from_pretrained(root / "vae", torch_dtype=dtype)
        else:
            transformer = WanTransformer3DModel.from_config(
                WanTransformer3DModel.load_config(root / "transformer")
            )
            vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(root / "vae"))
    transformer = transformer.to(dtype)
    vae = vae.to(dtype)
    if transformer.config.in_channels != vae.config.z_dim:
        raise ValueError(
            f"transformer in_channels {transformer.config.in_channels} != VAE z_dim {vae.config.z_dim}"
        )
    text_dim = int(transformer.config.text_dim)
    embeddings = None
    if config.text_encoder == "t5" and load_weights:
        embeddings = encode_task_texts(config.pretrained_dir, config.tasks, config.text_len, dtype)
        if embeddings.shape[-1] != text_dim:
            raise ValueError(f"text encoder width {embeddings.shape[-1]} != transformer text_dim {text_dim}")
    text = TaskText(config.text_encoder, len(config.tasks), config.text_len, text_dim, embeddings)
    return Backbone(transformer=transformer, vae=FrozenVAE(vae), text=text)


def tokens_per_frame(transformer: nn.Module, latent_shape: tuple[int, int, int]) -> int:
    _, p_h, p_w = transformer.config.patch_size
    _, h, w = latent_shape
    if h % p_h or w % p_w:
        raise ValueError(f"latent {h}x{w} is not divisible by the transformer patch {p_h}x{p_w}")
    return (h // p_h) * (w // p_w)


# Inside a saved ViVa/WVM: the backbone's diffusers configs, so the checkpoint rebuilds on its own.
ARCHITECTURE_DIR = "backbone"


class WanValueModel(ValueModelBase):
    """What ViVa and WVM share: one Wan backbone (transformer, frozen VAE, task text) and its latent geometry."""

    def __init__(
        self, config: ValueModelConfig, load_weights: bool = True, backbone: Backbone | None = None
    ) -> None:
        super().__init__(config)
        backbone = backbone if backbone is not None else build_backbone(config, load_weights=load_weights)
        self.transformer = backbone.transformer
        self.vae = backbone.vae
        self.text = backbone.text
        self.latent_shape = self.vae.latent_shape(config.image_height, config.image_width)
        self.tokens_per_frame = tokens_per_frame(self.transformer, self.latent_shape)

    def save(self, directory: str | Path) -> None:
        super().save(directory)
        self.transformer.save_config(Path(directory) / ARCHITECTURE_DIR / "transformer")
        self.vae.vae.save_config(Path(directory) / ARCHITECTURE_DIR / "vae")

    @classmethod
    def architecture(cls, config: ValueModelConfig, directory: Path) -> WanValueModel:
        saved = directory / ARCHITECTURE_DIR
        if not (saved / "transformer").is_dir():  # saved before checkpoints kept their backbone's configs
            return cls(config, load_weights=False)
        return cls(config, load_weights=False, backbone=build_backbone(config, False, architecture_dir=saved))
