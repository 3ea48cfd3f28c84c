"""ViVa: a video-generative value model on the Wan2.2 TI2V transformer (Lv et al., 2026).

The pretrained video DiT is fine-tuned, architecture unchanged, to "generate" two latent frames conditioned on
the present: the proprioception ``horizon`` control steps ahead and the value of the present (frame layout and
decoding in ``valuemodel.latents``). Training is flow matching on those two target frames only,
L = future_state_weight * L_future_state + value_weight * L_value (0.5 and 1.0 in the paper); condition frames are
fed clean with timestep 0, as Wan2.2 TI2V treats its conditioning frame. Inference runs ``num_inference_steps``
Euler steps (1 by default) from seeded noise, the same draw for every sample, and decodes the two frames.
"""

from __future__ import annotations

import torch

from valuemodel.backbone import Backbone, WanValueModel, torch_dtype
from valuemodel.config import ValueModelConfig
from valuemodel.flow import (
    inference_sigmas,
    noisy_latents,
    sample_sigma,
    token_timesteps,
    weighted_flow_loss,
)
from valuemodel.interface import ValueBatch, ValuePrediction
from valuemodel.latents import (
    FUTURE_STATE,
    VALUE,
    assemble_frames,
    condition_mask,
    frame_layout,
    split_targets,
)


class ViVaModel(WanValueModel):
    """ViVa value model; implements the ``ValueModel`` protocol."""

    kind = "viva"

    def __init__(
        self, config: ValueModelConfig, load_weights: bool = True, backbone: Backbone | None = None
    ) -> None:
        super().__init__(config, load_weights, backbone)
        frame_numel = self.latent_shape[0] * self.latent_shape[1] * self.latent_shape[2]
        if config.state_dim > frame_numel:
            raise ValueError(f"state_dim {config.state_dim} exceeds a latent frame ({frame_numel} elements)")
        layout = frame_layout(config.cameras)
        weights = torch.zeros(len(layout))
        weights[layout.index(FUTURE_STATE)] = config.future_state_weight
        weights[layout.index(VALUE)] = config.value_weight
        self.register_buffer("target_mask", 1.0 - condition_mask(config.cameras), persistent=False)
        self.register_buffer("frame_weights", weights, persistent=False)

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch_dtype(self.config.dtype)

    def encode_images(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """camera -> (B, C, h, w) latents; all cameras go through the VAE as one batch.

        Use it to precompute ``ValueBatch.image_latents`` (the VAE is frozen, so latents can be cached per frame).
        """
        missing = [c for c in self.config.cameras if c not in images]
        if missing:
            raise KeyError(f"images lack cameras {missing}; have {sorted(images)}")
        stacked = torch.cat([images[c] for c in self.config.cameras]).to(self.device)
        latents = self.vae.encode(stacked, self.config.image_height, self.config.image_width)
        return dict(zip(self.config.cameras, latents.chunk(len(self.config.cameras)), strict=True))

    def camera_latents(self, batch: ValueBatch) -> list[torch.Tensor]:
        if batch.image_latents is not None:
            latents = batch.image_latents
        elif batch.images is not None:
            latents = self.encode_images(batch.images)
        else:
            raise ValueError("ValueBatch needs images or image_latents")
        missing = [c for c in self.config.cameras if c not in latents]
        if missing:
            raise KeyError(f"image latents lack cameras {missing}; have {sorted(latents)}")
        frames = [latents[c].to(self.device, torch.float32) for c in self.config.cameras]
        if tuple(frames[0].shape[1:]) != self.latent_shape:
            raise ValueError(
                f"camera latents are {tuple(frames[0].shape[1:])}, model expects {self.latent_shape}"
            )
        return frames

    def clean_latents(self, batch: ValueBatch, with_targets: bool) -> torch.Tensor:
        """(B, C, F, h, w) ViVa sequence; target frames are zero when ``with_targets`` is False."""
        batch.require("state")
        if with_targets:
            batch.require("future_state", "value_target")
        return assemble_frames(
            batch.state.to(self.device, torch.float32),
            self.camera_latents(batch),
            batch.future_state.to(self.device) if with_targets else None,
            batch.value_target.to(self.device) if with_targets else None,
        )

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """Transformer velocity prediction for every frame (float32, same shape as ``latents``)."""
        timesteps = token_timesteps(
            sigma, self.target_mask, self.tokens_per_frame, self.config.num_train_timesteps
        )
        text = self.text(task_id.to(self.device)).to(self.compute_dtype)
        out = self.transformer(
            latents.to(self.compute_dtype), timestep=timesteps, encoder_hidden_states=text, return_dict=False
        )[0]
        return out.float()

    def loss(self, batch: ValueBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        clean = self.clean_latents(batch, with_targets=True)
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        sigma = sample_sigma(clean.shape[0], self.config.shift, clean.device, generator)
        prediction = self.velocity(noisy_latents(clean, noise, sigma, self.target_mask), sigma, batch.task_id)
        total, per_frame = weighted_flow_loss(prediction, noise - clean, self.frame_weights, self.target_mask)
        # per_frame holds the target frames in layout order: future state, then value.
        return {
            "loss": total,
            "loss_future_state": per_frame[0].detach(),
            "loss_value": per_frame[1].detach(),
        }

    @torch.no_grad()
    def predict(
        self, batch: ValueBatch, num_steps: int | None = None, generator: torch.Generator | None = None
    ) -> ValuePrediction:
        clean = self.clean_latents(batch, with_targets=False)
        if generator is None:
            generator = torch.Generator().manual_seed(self.config.inference_seed)
        batch_size = clean.shape[0]
        # One noise draw shared by every row: drawn per row, a frame's value would depend on its position in the
        # inference batch (episode curves then repeat with the batch size), and any residual of the one-step
        # denoise is a constant offset across frames instead of frame-to-frame jitter.
        noise = torch.randn((1, *clean.shape[1:]), generator=generator).to(clean.device)
        noise = noise.expand_as(clean)
        latents = noisy_latents(clean, noise, torch.ones(batch_size, device=clean.device), self.target_mask)
        mask = self.target_mask.reshape(1, 1, -1, 1, 1)
        sigmas = inference_sigmas(num_steps or self.config.num_inference_steps, self.config.shift)
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            v = self.velocity(latents, torch.full((batch_size,), sigma, device=clean.device), batch.task_id)
            latents = latents + (sigma_next - sigma) * v * mask
        future_state, value = split_targets(latents, self.config.state_dim)
        return ValuePrediction(value=value, future_state=future_state)
