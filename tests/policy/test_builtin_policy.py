"""The built-in policy: it fits a tiny batch with either head, guidance behaves, augmentation shifts images."""

from __future__ import annotations

import pytest
import torch
from policy_helpers import tiny_batch, tiny_config

from policy.builtin import BuiltinPolicyModel, SpatialSoftmax, random_shift
from policy.conditioning import DROPPED, POSITIVE


@pytest.mark.parametrize("head", ["flow", "l1"])
def test_overfits_a_tiny_batch(head):
    torch.manual_seed(0)
    config = tiny_config(head=head)
    model = BuiltinPolicyModel(config)
    inputs, targets = tiny_batch(config)

    def sample_error() -> float:
        model.eval()
        error = (
            model.predict_chunk(inputs, generator=torch.Generator().manual_seed(0)) - targets.actions
        ).abs()
        model.train()
        return error.mean().item()

    error_before = sample_error()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(300 if head == "flow" else 150):
        loss = model.loss(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # The flow loss keeps a floor from its random noise and time draws; the L1 loss can go to zero.
    ratio = 0.6 if head == "flow" else 0.3
    assert sum(losses[-20:]) / 20 < ratio * sum(losses[:20]) / 20
    assert sample_error() < (0.75 if head == "flow" else 0.3) * error_before


def test_weights_select_frames():
    config = tiny_config(head="l1")
    model = BuiltinPolicyModel(config).eval()
    inputs, targets = tiny_batch(config, size=4)
    per_frame = []
    for i in range(4):
        only = torch.zeros(4)
        only[i] = 1.0
        targets.weight = only
        per_frame.append(model.loss(inputs, targets).item())
    targets.weight = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert model.loss(inputs, targets).item() == pytest.approx(sum(per_frame[:2]) / 2, rel=1e-5)


@pytest.mark.parametrize("head", ["flow", "l1"])
def test_guidance_beta_one_is_the_conditional_model_and_beta_zero_the_unconditional(head):
    torch.manual_seed(0)
    config = tiny_config(head=head)
    model = BuiltinPolicyModel(config).eval()
    inputs, _ = tiny_batch(config, size=3)
    inputs = inputs.with_indicator(POSITIVE)

    def sample(batch, beta):
        return model.predict_chunk(batch, cfg_beta=beta, generator=torch.Generator().manual_seed(1))

    plain = sample(inputs, 1.0)
    assert plain.shape == (3, config.chunk_size, config.action_dim)
    torch.testing.assert_close(sample(inputs, 1.0 + 1e-9), plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        sample(inputs, 0.0), sample(inputs.with_indicator(DROPPED), 1.0), atol=1e-5, rtol=1e-4
    )
    assert not torch.allclose(sample(inputs, 2.0), plain)


def test_random_shift_moves_content_within_the_padding():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert torch.equal(random_shift(images, 0), images)
    # Interior pixels of a shifted image are pixels of the original, moved by at most 2 in each direction.
    centre = shifted[0, 0, 2:6, 2:6]
    assert torch.isin(centre, images[0, 0]).all()


def test_spatial_softmax_returns_the_coordinates_of_a_peak():
    features = torch.full((1, 2, 5, 9), -1e4)
    features[0, 0, 0, 8] = 0.0  # top right
    features[0, 1, 2, 4] = 0.0  # centre
    coordinates = SpatialSoftmax()(features)
    torch.testing.assert_close(coordinates, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))
