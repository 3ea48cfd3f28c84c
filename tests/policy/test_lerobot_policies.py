"""LeRobot ACT and diffusion with the RECAP indicator as a state feature: one train step, one action each, and
their rollout queues emptied at a takeover."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import fake_observation, tiny_batch, unit_normalizer

from policy.checkpoint import load_policy, save_policy
from policy.conditioning import DROPPED, POSITIVE
from policy.config import PolicyConfig
from policy.deploy import Policy
from policy.factory import build_model

pytest.importorskip("lerobot")

TINY = {
    "act": {
        "dim_model": 32,
        "n_heads": 2,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
    },
    "diffusion": {
        "down_dims": (16, 32),
        "n_groups": 4,
        "diffusion_step_embed_dim": 16,
        "spatial_softmax_num_keypoints": 8,
        "num_train_timesteps": 10,
        "num_inference_steps": 3,
    },
}


def tiny_lerobot_config(kind: str, **overrides) -> PolicyConfig:
    return PolicyConfig(
        kind=kind,
        cameras=["front", "wrist"],
        image_size=32,
        state_dim=4,
        action_dim=3,
        chunk_size=4,
        execute_steps=2,
        lerobot_overrides=TINY[kind],
        **overrides,
    )


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_one_train_step_and_one_action(kind, tmp_path):
    torch.manual_seed(0)
    config = tiny_lerobot_config(kind, cfg_beta=1.5)
    model = build_model(config)
    inputs, targets = tiny_batch(config, size=4)
    targets.valid[:, -1] = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = {k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    model.train()
    loss = model.loss(inputs, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)

    model.eval()
    chunk = model.predict_chunk(inputs.with_indicator(POSITIVE), cfg_beta=1.5, generator=torch.Generator())
    assert chunk.shape == (4, config.chunk_size, config.action_dim) and torch.isfinite(chunk).all()

    save_policy(model, unit_normalizer(config), tmp_path, 0, labelling_run="lab")
    policy = load_policy(tmp_path)
    policy.reset(0)
    action = policy.act(fake_observation(config))
    assert action.shape == (3,) and np.isfinite(action).all()


def test_indicator_is_a_signed_state_feature():
    model = build_model(tiny_lerobot_config("act"))
    inputs, _ = tiny_batch(model.config, size=3)
    observation = model._observation(inputs, torch.tensor([0, POSITIVE, DROPPED]))
    state = observation["observation.state"]
    assert state.shape == (3, 5)
    assert state[:, -1].tolist() == [-1.0, 1.0, 0.0]
    torch.testing.assert_close(state[:, :4], inputs.state)


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_discarding_the_plan_empties_lerobots_queues_and_keeps_the_weights(kind):
    torch.manual_seed(0)
    config = tiny_lerobot_config(kind)
    model = build_model(config).eval()
    policy = Policy(model, unit_normalizer(config))
    inputs, _ = tiny_batch(config, size=1)
    observation = model._observation(inputs, inputs.indicator)
    # LeRobot's own rollout API takes one key per camera and fills its queues with the rest of the chunk.
    batch = {"observation.state": observation["observation.state"].reshape(1, -1)}
    batch.update({f"observation.images.{cam}": inputs.images[cam] * 2.0 - 1.0 for cam in config.cameras})
    model.policy.select_action(batch)

    def queues():
        # Read afresh each time: LeRobot's reset replaces the deques rather than emptying them.
        return [model.policy._action_queue] if kind == "act" else list(model.policy._queues.values())

    assert any(len(queue) for queue in queues())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    policy.discard_plan()
    assert not any(len(queue) for queue in queues())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
