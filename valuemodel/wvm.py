"""WVM: a world value model, a narrow value stream riding on the Wan video DiT (Wang et al., 2026).

Video stream: the Wan transformer, unchanged, generates the h future frames of a window from its prefix and h
current frames (frozen VAE, one latent frame per camera image, time-major then camera order). Value stream: one
narrow DiT block per Wan block predicts a chunk of h values (the current frames) given the prefix values.

Attention (our reading of the paper's Mixture-of-Transformers joint attention with an asymmetric mask): the value
queries of layer l attend over [video tokens entering Wan block l ; value tokens], with the value stream's own
K/V projections for both; video queries attend to video only. Because video never sees value, the video stream is
exactly Wan's own forward, so we run it untouched and read each block's input through forward pre-hooks; the value
stream then runs beside it. That equals MoT with the block mask [[video->video], [value->video, value->value]] up to
the choice of which weights project video into the value stream's keys (ours: value-side projections, so the
pretrained video weights stay the video stream's alone).

Training: L = value_weight * L_value + video_loss_weight * L_video, both flow matching with one shared noise level
per sample; condition tokens (prefix/current frames, prefix values) are clean with timestep 0. Augmentations:
prefix randomisation (prefix values -> U(-1, 1) with p = prefix_noise_prob) and video rewinding (windows made
flat or reversed with p = rewind_prob, labels changed to match).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from valuemodel.backbone import Backbone, WanValueModel, torch_dtype
from valuemodel.config import ValueModelConfig
from valuemodel.flow import inference_sigmas, noisy_latents, sample_sigma, token_timesteps, weighted_flow_loss
from valuemodel.interface import ValueBatch, ValuePrediction

KEEP, FLAT, REVERSED = 0, 1, 2


def rewind_windows(
    frames: torch.Tensor, labels: torch.Tensor, modes: torch.Tensor, present: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Video rewinding: per sample keep the window (rising), make it flat, or reverse it; labels follow.

    frames (B, T, ...), labels (B, T), modes (B,) in {KEEP, FLAT, REVERSED}. FLAT repeats the present frame
    (index ``present``) and its label over the whole window; REVERSED plays the window backwards.
    """
    out_frames, out_labels = frames.clone(), labels.clone()
    flat = modes == FLAT
    if flat.any():
        out_frames[flat] = frames[flat, present : present + 1].expand_as(frames[flat])
        out_labels[flat] = labels[flat, present : present + 1].expand_as(labels[flat])
    rev = modes == REVERSED
    if rev.any():
        out_frames[rev] = frames[rev].flip(1)
        out_labels[rev] = labels[rev].flip(1)
    return out_frames, out_labels


def merge_value_chunks(chunks: np.ndarray, last_frames: np.ndarray, length: int) -> np.ndarray:
    """Average overlapping value chunks into one per-frame curve (WVM's sliding-window inference).

    chunks (N, h): chunk i covers frames last_frames[i] - h + 1 .. last_frames[i]; frames no chunk covers are NaN.
    """
    total = np.zeros(length)
    count = np.zeros(length)
    h = chunks.shape[1]
    for chunk, last in zip(chunks, last_frames, strict=True):
        idx = np.arange(last - h + 1, last + 1)
        ok = (idx >= 0) & (idx < length)
        total[idx[ok]] += chunk[ok]
        count[idx[ok]] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def timestep_features(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (..., dim) of timesteps in [0, 1000]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=timesteps.device) / half)
    angles = timesteps.float().unsqueeze(-1) * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ValueStreamBlock(nn.Module):
    """One value-stream layer: adaLN-modulated joint attention over [video ; value] tokens, then an MLP."""

    def __init__(self, dim: int, video_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"value stream width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_video = nn.LayerNorm(video_dim, elementwise_affine=False, eps=1e-6)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.video_to_kv = nn.Linear(video_dim, 2 * dim)
        self.norm_q = nn.RMSNorm(dim, eps=1e-6)
        self.norm_k = nn.RMSNorm(dim, eps=1e-6)
        self.to_out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim)
        )
        # adaLN-zero: gates start at 0, so each block starts as the identity (stable next to a pretrained DiT).
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, video: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(temb)).chunk(6, dim=-1)
        h = self.norm_attn(x) * (1 + scale1) + shift1
        video_k, video_v = self.video_to_kv(self.norm_video(video.to(x.dtype))).chunk(2, dim=-1)
        own_k, own_v = self.to_kv(h).chunk(2, dim=-1)
        q = self.norm_q(self.to_q(h))
        k = self.norm_k(torch.cat([video_k, own_k], dim=1))
        v = torch.cat([video_v, own_v], dim=1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + gate1 * self.to_out(attn)
        return x + gate2 * self.mlp(self.norm_mlp(x) * (1 + scale2) + shift2)


class ValueStream(nn.Module):
    """Narrow DiT over P prefix + h chunk value tokens, one block per Wan block."""

    def __init__(self, num_tokens: int, dim: int, video_dim: int, heads: int, num_layers: int) -> None:
        super().__init__()
        self.dim = dim
        self.value_in = nn.Linear(1, dim)
        self.slot_embedding = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList([ValueStreamBlock(dim, video_dim, heads) for _ in range(num_layers)])
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.value_out = nn.Linear(dim, 1)

    def forward(self, values: torch.Tensor, timesteps: torch.Tensor, video_layers: list[torch.Tensor]):
        """values, timesteps (B, N); video_layers: one (B, M, video_dim) per block -> (B, N) velocities."""
        x = self.value_in(values.unsqueeze(-1)) + self.slot_embedding
        temb = self.time_mlp(timestep_features(timesteps, self.dim).to(x.dtype))
        for block, video in zip(self.blocks, video_layers, strict=True):
            x = block(x, video, temb)
        return self.value_out(self.norm_out(x)).squeeze(-1)


class WorldValueModel(WanValueModel):
    """WVM value model; implements the ``ValueModel`` protocol (``future_state`` is None, ``value_chunk`` set)."""

    kind = "wvm"

    def __init__(
        self, config: ValueModelConfig, load_weights: bool = True, backbone: Backbone | None = None
    ) -> None:
        super().__init__(config, load_weights, backbone)
        tcfg = self.transformer.config
        video_dim = tcfg.num_attention_heads * tcfg.attention_head_dim
        p, h, cams = config.prefix_frames, config.chunk, len(config.cameras)
        self.value_stream = ValueStream(p + h, config.value_stream_dim, video_dim, config.value_stream_heads,
                                        tcfg.num_layers).to(torch_dtype(config.dtype))  # fmt: skip
        video_target = torch.tensor([0.0] * (p + h) * cams + [1.0] * h * cams)
        self.register_buffer("video_target_mask", video_target, persistent=False)
        self.register_buffer("value_target_mask", torch.tensor([0.0] * p + [1.0] * h), persistent=False)

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch_dtype(self.config.dtype)

    def encode_video(self, video: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """camera -> (B, T, 3, H, W) frames -> camera -> (B, T, C, h, w) latents (for caching)."""
        cams = self.config.cameras
        missing = [c for c in cams if c not in video]
        if missing:
            raise KeyError(f"video lacks cameras {missing}; have {sorted(video)}")
        b, t = video[cams[0]].shape[:2]
        stacked = torch.cat([video[c].flatten(0, 1) for c in cams]).to(self.device)
        latents = self.vae.encode(stacked, self.config.image_height, self.config.image_width)
        return {c: x.unflatten(0, (b, t)) for c, x in zip(cams, latents.chunk(len(cams)), strict=True)}

    def window_latents(self, batch: ValueBatch) -> torch.Tensor:
        """(B, T, n_cameras, C, h, w) latents of the batch's window."""
        if batch.video_latents is not None:
            latents = batch.video_latents
        elif batch.video is not None:
            latents = self.encode_video(batch.video)
        else:
            raise ValueError("WVM needs ValueBatch.video or video_latents")
        return torch.stack([latents[c].to(self.device, torch.float32) for c in self.config.cameras], dim=2)

    def to_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, n_cams, C, h, w) -> (B, C, T * n_cams, h, w): time-major, camera-minor latent frames."""
        return frames.flatten(1, 2).transpose(1, 2)

    def velocities(
        self, video: torch.Tensor, values: torch.Tensor, sigma: torch.Tensor, task_id: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video velocity (B, C, F, h, w) and value velocity (B, N) for noisy inputs at noise level sigma."""
        scale = self.config.num_train_timesteps
        t_video = token_timesteps(sigma, self.video_target_mask, self.tokens_per_frame, scale)
        taps: dict[int, torch.Tensor] = {}

        def keep_input(index: int):
            def hook(module: nn.Module, args: tuple) -> None:
                taps[index] = args[0]

            return hook

        handles = [
            blk.register_forward_pre_hook(keep_input(i)) for i, blk in enumerate(self.transformer.blocks)
        ]
        try:
            text = self.text(task_id.to(self.device)).to(self.compute_dtype)
            video_v = self.transformer(
                video.to(self.compute_dtype), timestep=t_video, encoder_hidden_states=text, return_dict=False
            )[0]
        finally:
            for handle in handles:
                handle.remove()
        t_value = sigma.reshape(-1, 1) * self.value_target_mask.reshape(1, -1) * scale
        layers = [taps[i] for i in range(len(self.transformer.blocks))]
        value_v = self.value_stream(values.to(self.compute_dtype), t_value, layers)
        return video_v.float(), value_v.float()

    def loss(self, batch: ValueBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        batch.require("value_window")
        cfg = self.config
        p, h = cfg.prefix_frames, cfg.chunk
        frames = self.window_latents(batch)
        labels = batch.value_window.to(self.device, torch.float32)
        if frames.shape[1] != cfg.window_frames or labels.shape[1] != cfg.window_frames:
            raise ValueError(f"WVM training windows need {cfg.window_frames} frames (prefix + 2 chunks)")
        b, device = frames.shape[0], frames.device
        if self.training and cfg.rewind_prob > 0:
            rewind = torch.rand(b, device=device, generator=generator) < cfg.rewind_prob
            flat = torch.rand(b, device=device, generator=generator) < 0.5
            modes = torch.where(rewind, torch.where(flat, FLAT, REVERSED), KEEP)
            frames, labels = rewind_windows(frames, labels, modes, present=p + h - 1)
        clean_values = labels[:, : p + h].clone()
        if self.training and p > 0 and cfg.prefix_noise_prob > 0:
            noisy_prefix = torch.rand(b, 1, device=device, generator=generator) < cfg.prefix_noise_prob
            uniform = torch.rand(b, p, device=device, generator=generator) * 2 - 1
            clean_values[:, :p] = torch.where(noisy_prefix, uniform, clean_values[:, :p])
        video = self.to_video(frames)
        sigma = sample_sigma(b, cfg.shift, device, generator)
        video_noise = torch.randn(video.shape, device=device, generator=generator)
        value_noise = torch.randn(clean_values.shape, device=device, generator=generator)
        s, mask = sigma.reshape(-1, 1), self.value_target_mask.reshape(1, -1)
        noisy_values = mask * ((1 - s) * clean_values + s * value_noise) + (1 - mask) * clean_values
        video_v, value_v = self.velocities(
            noisy_latents(video, video_noise, sigma, self.video_target_mask),
            noisy_values,
            sigma,
            batch.task_id,
        )
        weights = self.video_target_mask / self.video_target_mask.sum()
        video_loss, _ = weighted_flow_loss(video_v, video_noise - video, weights)
        value_loss = (value_v[:, p:] - (value_noise - clean_values)[:, p:]).pow(2).mean()
        total = cfg.value_weight * value_loss + cfg.video_loss_weight * video_loss
        return {"loss": total, "loss_value": value_loss.detach(), "loss_video": video_loss.detach()}

    @torch.no_grad()
    def predict(
        self, batch: ValueBatch, num_steps: int | None = None, generator: torch.Generator | None = None
    ) -> ValuePrediction:
        """Values of the h current frames; the window needs at least prefix + h frames (future ones are ignored).

        Prefix values come from ``batch.value_window`` (e.g. the previous chunk's prediction) when given, else
        U(-1, 1) noise, which the model saw in training through prefix randomisation.
        """
        cfg = self.config
        p, h = cfg.prefix_frames, cfg.chunk
        frames = self.window_latents(batch)
        if frames.shape[1] < p + h:
            raise ValueError(
                f"WVM inference needs at least {p + h} frames (prefix + chunk), got {frames.shape[1]}"
            )
        frames = frames[:, : p + h]
        frames = torch.cat([frames, torch.zeros_like(frames[:, :h])], dim=1)
        clean = self.to_video(frames)
        b, device = clean.shape[0], clean.device
        if generator is None:
            generator = torch.Generator().manual_seed(cfg.inference_seed)
        # Every random draw (prefix, video noise, value noise) is shared by all rows: drawn per row, a window's
        # values would depend on its position in the inference batch, and episode curves repeat with its size.
        if batch.value_window is not None:
            prefix = batch.value_window[:, :p].to(device, torch.float32)
        else:
            prefix = (torch.rand(1, p, generator=generator) * 2 - 1).to(device).expand(b, -1)
        video_noise = torch.randn((1, *clean.shape[1:]), generator=generator).to(device).expand_as(clean)
        video = noisy_latents(clean, video_noise, torch.ones(b, device=device), self.video_target_mask)
        value_noise = torch.randn(1, h, generator=generator).to(device).expand(b, -1)
        values = torch.cat([prefix, value_noise], dim=1)
        video_mask = self.video_target_mask.reshape(1, 1, -1, 1, 1)
        value_mask = self.value_target_mask.reshape(1, -1)
        sigmas = inference_sigmas(num_steps or cfg.num_inference_steps, cfg.shift)
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            video_v, value_v = self.velocities(
                video, values, torch.full((b,), sigma, device=device), batch.task_id
            )
            video = video + (sigma_next - sigma) * video_v * video_mask
            values = values + (sigma_next - sigma) * value_v * value_mask
        chunk = values[:, p:]
        return ValuePrediction(value=chunk[:, -1], value_chunk=chunk)
