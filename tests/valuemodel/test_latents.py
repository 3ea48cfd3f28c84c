import pytest
import torch

from valuemodel.flow import inference_sigmas, noisy_latents, shift_sigma, token_timesteps, weighted_flow_loss
from valuemodel.latents import (
    assemble_frames,
    condition_mask,
    extract_state,
    extract_value,
    frame_layout,
    inject_state,
    inject_value,
    split_targets,
)


@pytest.mark.parametrize("state_dim", [1, 6, 7, 14, 256])
def test_state_round_trip_is_exact(state_dim):
    state = torch.rand(5, state_dim) * 2 - 1
    frame = inject_state(state, (4, 8, 8))
    assert frame.shape == (5, 4, 8, 8)
    assert torch.equal(extract_state(frame, state_dim), state)


def test_state_is_repeat_padded():
    frame = inject_state(torch.tensor([[0.1, 0.2, 0.3]]), (1, 2, 2))
    assert frame.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.1])


def test_state_too_wide_for_frame():
    with pytest.raises(ValueError, match="does not fit"):
        inject_state(torch.zeros(1, 10), (1, 2, 2))


def test_value_round_trip_is_exact():
    value = torch.rand(9) * 2 - 1
    frame = inject_value(value, (48, 24, 20))
    assert torch.equal(frame[:, 3, 5, 7], value)
    assert torch.equal(extract_value(frame), value)


def test_layout_and_mask_follow_the_cameras():
    cams = ["left_wrist", "right_wrist", "high"]
    assert frame_layout(cams) == [
        "blank", "state", "camera:left_wrist", "camera:right_wrist", "camera:high", "future_state", "value"
    ]  # fmt: skip
    assert condition_mask(cams).tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert condition_mask(["front"]).tolist() == [1, 1, 1, 0, 0]


def test_assemble_then_split_targets():
    cams = [torch.randn(2, 4, 8, 8) for _ in range(2)]
    state, future, value = torch.rand(2, 6), torch.rand(2, 6), torch.rand(2)
    z = assemble_frames(state, cams, future, value)
    assert z.shape == (2, 4, 6, 8, 8)
    assert torch.all(z[:, :, 0] == 0)
    assert torch.equal(z[:, :, 2], cams[0]) and torch.equal(z[:, :, 3], cams[1])
    fs, v = split_targets(z, 6)
    assert torch.equal(fs, future) and torch.equal(v, value)
    assert torch.equal(extract_state(z[:, :, 1], 6), state)


def test_noise_only_touches_target_frames():
    clean, noise = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 4, 5, 8, 8)
    mask = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    mixed = noisy_latents(clean, noise, torch.tensor([0.3, 1.0]), mask)
    assert torch.equal(mixed[:, :, :3], clean[:, :, :3])
    assert torch.allclose(mixed[0, :, 3:], 0.7 * clean[0, :, 3:] + 0.3 * noise[0, :, 3:])
    assert torch.allclose(mixed[1, :, 3:], noise[1, :, 3:])


def test_loss_ignores_condition_frames():
    weights = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0])
    pred, target = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 4, 5, 8, 8)
    total, per_frame = weighted_flow_loss(pred, target, weights)
    perturbed = pred.clone()
    perturbed[:, :, :3] += 100.0
    assert torch.equal(weighted_flow_loss(perturbed, target, weights)[0], total)
    expected = (
        0.5 * (pred[:, :, 3] - target[:, :, 3]).pow(2).mean()
        + (pred[:, :, 4] - target[:, :, 4]).pow(2).mean()
    )
    assert torch.allclose(total, expected)
    assert per_frame.shape == (2,)


def test_timesteps_zero_on_condition_tokens():
    t = token_timesteps(
        torch.tensor([0.5]), torch.tensor([0.0, 1.0]), tokens_per_frame=3, num_train_timesteps=1000
    )
    assert t.tolist() == [[0, 0, 0, 500, 500, 500]]


def test_shift_and_sigma_grid():
    assert shift_sigma(torch.tensor(0.5), 5.0).item() == pytest.approx(5 / 6)
    assert inference_sigmas(1, 5.0) == [1.0, 0.0]
    grid = inference_sigmas(4, 5.0)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and all(a > b for a, b in zip(grid, grid[1:], strict=False))
