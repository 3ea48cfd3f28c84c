"""ViVa latent injection: turning proprioception and values into latent frames and back (pure functions).

Every ViVa input is one latent frame of shape (C, h, w), laid out along the transformer's frame axis as

    [blank, state_t, camera_1, ..., camera_n, future_state_{t+K}, value_t]

with condition mask [1, 1, 1, ..., 1, 0, 0]: the first frames are given, the last two are generated.

- the blank frame is all zeros; Wan2.2's causal VAE encodes the first frame of a video alone, and the pretrained
  TI2V transformer always sees a conditioning frame first, so ViVa keeps that slot;
- a state (D,) is tiled ("repeat-padded") over the C*h*w elements of its frame; decoding reads the frame back as
  D-wide chunks and averages each position over its chunks (a trailing partial chunk counts too);
- a value is broadcast over its frame; decoding is the frame mean.

Decoding averages in float64, so decode(encode(x)) == x exactly for float32 inputs.
"""

from __future__ import annotations

import torch

BLANK = "blank"
STATE = "state"
FUTURE_STATE = "future_state"
VALUE = "value"


def camera_frame_name(camera: str) -> str:
    return f"camera:{camera}"


def frame_layout(cameras: list[str]) -> list[str]:
    """Names of the latent frames in transformer order."""
    return [BLANK, STATE, *(camera_frame_name(c) for c in cameras), FUTURE_STATE, VALUE]


def condition_mask(cameras: list[str]) -> torch.Tensor:
    """(F,) float mask, 1 for given (condition) frames, 0 for generated (target) frames."""
    return torch.tensor([0.0 if name in (FUTURE_STATE, VALUE) else 1.0 for name in frame_layout(cameras)])


def frame_index(cameras: list[str], name: str) -> int:
    return frame_layout(cameras).index(name)


def inject_state(state: torch.Tensor, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, D) -> (B, C, h, w): the state tiled along the flattened frame, cut at C*h*w elements."""
    if state.ndim != 2:
        raise ValueError(f"state must be (B, D), got {tuple(state.shape)}")
    batch, dim = state.shape
    numel = frame_shape[0] * frame_shape[1] * frame_shape[2]
    if dim > numel:
        raise ValueError(f"state_dim {dim} does not fit a latent frame of {numel} elements")
    repeats = -(-numel // dim)
    return state.repeat(1, repeats)[:, :numel].reshape(batch, *frame_shape)


def extract_state(frame: torch.Tensor, state_dim: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, D): mean over every element that ``inject_state`` wrote from the same state entry."""
    flat = frame.reshape(frame.shape[0], -1).to(torch.float64)
    numel = flat.shape[1]
    if state_dim > numel:
        raise ValueError(f"state_dim {state_dim} does not fit a latent frame of {numel} elements")
    slot = torch.arange(numel, device=frame.device) % state_dim
    sums = torch.zeros(flat.shape[0], state_dim, dtype=torch.float64, device=frame.device)
    sums.index_add_(1, slot, flat)
    counts = torch.bincount(slot, minlength=state_dim).to(torch.float64)
    return (sums / counts).to(frame.dtype)


def inject_value(value: torch.Tensor, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """(B,) -> (B, C, h, w): each scalar broadcast over its frame."""
    if value.ndim != 1:
        raise ValueError(f"value must be (B,), got {tuple(value.shape)}")
    return value.reshape(-1, 1, 1, 1).expand(-1, *frame_shape).contiguous()


def extract_value(frame: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B,): the frame mean."""
    return frame.reshape(frame.shape[0], -1).to(torch.float64).mean(dim=1).to(frame.dtype)


def assemble_frames(
    state: torch.Tensor,
    camera_latents: list[torch.Tensor],
    future_state: torch.Tensor | None,
    value: torch.Tensor | None,
) -> torch.Tensor:
    """Stack the ViVa sequence into a (B, C, F, h, w) video latent.

    Missing targets (inference) are left as zero frames; the sampler overwrites them with noise.
    """
    if not camera_latents:
        raise ValueError("ViVa needs at least one camera latent frame")
    ref = camera_latents[0]
    frame_shape = tuple(ref.shape[1:])
    zeros = torch.zeros_like(ref)
    frames = [
        zeros,
        inject_state(state.to(ref.dtype), frame_shape),
        *camera_latents,
        zeros if future_state is None else inject_state(future_state.to(ref.dtype), frame_shape),
        zeros if value is None else inject_value(value.to(ref.dtype), frame_shape),
    ]
    return torch.stack(frames, dim=2)


def split_targets(latents: torch.Tensor, state_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode (future_state (B, D), value (B,)) from the last two frames of a (B, C, F, h, w) ViVa latent."""
    return extract_state(latents[:, :, -2], state_dim), extract_value(latents[:, :, -1])
