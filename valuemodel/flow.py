"""Rectified-flow training and sampling helpers shared by ViVa and WVM (pure tensor functions).

Convention (as in Wan and SD3): sigma in [0, 1] is the noise level, z_sigma = (1 - sigma) z0 + sigma eps, and the
network predicts the velocity v = eps - z0. Training samples sigma = shift(u) with u ~ U(0, 1) and the static
shift shift(s) = k s / (1 + (k - 1) s) (k = 5 in ViVa), which puts most training at high noise, where one-step
inference starts. Sampling runs Euler steps z <- z + (sigma_next - sigma) v from sigma = 1 down to 0 on the shifted
grid; that is what diffusers' FlowMatchEulerDiscreteScheduler(shift=k) does, written out so that the per-token
timesteps (0 for condition tokens, as in Wan2.2 TI2V) stay explicit.
"""

from __future__ import annotations

import torch


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Static timestep shift; maps [0, 1] onto [0, 1] monotonically."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_sigma(
    batch: int, shift: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B,) training noise levels: shifted uniform."""
    u = torch.rand(batch, device=device, generator=generator)
    return shift_sigma(u, shift)


def inference_sigmas(num_steps: int, shift: float) -> list[float]:
    """num_steps + 1 noise levels from 1 to 0 on the shifted grid."""
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift_sigma(grid, shift).tolist()


def noisy_latents(
    clean: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, target_mask: torch.Tensor
) -> torch.Tensor:
    """Mix noise into the target frames only; condition frames stay clean.

    clean, noise: (B, C, F, h, w); sigma: (B,); target_mask: (F,) with 1 on generated frames.
    """
    s = sigma.reshape(-1, 1, 1, 1, 1).to(clean.dtype)
    mask = target_mask.reshape(1, 1, -1, 1, 1).to(clean.dtype)
    mixed = (1.0 - s) * clean + s * noise
    return mask * mixed + (1.0 - mask) * clean


def token_timesteps(
    sigma: torch.Tensor, target_mask: torch.Tensor, tokens_per_frame: int, num_train_timesteps: int
) -> torch.Tensor:
    """(B, F * tokens_per_frame) transformer timesteps: sigma * scale on target tokens, 0 on condition tokens.

    Wan2.2 TI2V was trained this way (its first, conditioning frame always has timestep 0), so condition frames
    read as "clean" to the pretrained weights.
    """
    per_frame = sigma.reshape(-1, 1) * target_mask.reshape(1, -1).to(sigma.dtype) * num_train_timesteps
    return per_frame.repeat_interleave(tokens_per_frame, dim=1)


def masked_frame_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C, F, h, w) pair -> (F,) mean squared error per frame over batch, channels and space."""
    return (prediction.float() - target.float()).pow(2).mean(dim=(0, 1, 3, 4))


def weighted_flow_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    frame_weights: torch.Tensor,
    target_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total loss sum_f w_f * MSE_f and the per-frame MSEs of the target frames.

    Frames outside ``target_mask`` (default: the frames with weight > 0) are dropped before the error is
    computed, so the conditions contribute neither value nor gradient. A target frame weighted 0 (an ablation)
    keeps its reported MSE and gets no gradient.
    """
    targets = frame_weights > 0 if target_mask is None else target_mask.bool()
    keep = torch.nonzero(targets).flatten()
    per_frame = masked_frame_mse(prediction.index_select(2, keep), target.index_select(2, keep))
    total = (per_frame * frame_weights[keep].to(per_frame)).sum()
    return total, per_frame
