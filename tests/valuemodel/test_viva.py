from dataclasses import replace

import numpy as np
import pytest
import torch
from latent_helpers import random_latents

from valuemodel.config import ValueModelConfig
from valuemodel.interface import ValueBatch, ValueModel
from valuemodel.synthetic import synthetic_config
from valuemodel.viva import ViVaModel


def make_batch(model, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ValueBatch(
        task_id=torch.zeros(batch, dtype=torch.long),
        image_latents=random_latents(model.config, batch, model.latent_shape, seed),
        state=torch.rand(batch, model.config.state_dim, generator=g) * 2 - 1,
        future_state=torch.rand(batch, model.config.state_dim, generator=g) * 2 - 1,
        value_target=torch.rand(batch, generator=g) * 2 - 1,
    )


def test_protocol_and_shapes(tiny_viva):
    assert isinstance(tiny_viva, ValueModel)
    assert tiny_viva.latent_shape == (12, 8, 8)
    batch = make_batch(tiny_viva)
    losses = tiny_viva.loss(batch)
    assert set(losses) == {"loss", "loss_future_state", "loss_value"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    # The paper's weights, 0.5 on the future state and 1.0 on the value, are the defaults.
    expected = 0.5 * losses["loss_future_state"] + losses["loss_value"]
    assert torch.allclose(losses["loss"].detach(), expected)
    pred = tiny_viva.predict(batch)
    assert pred.value.shape == (4,) and pred.future_state.shape == (4, 6)


def test_predict_is_deterministic_and_batched(tiny_viva):
    batch = make_batch(tiny_viva, batch=3)
    a, b = tiny_viva.predict(batch), tiny_viva.predict(batch)
    assert torch.equal(a.value, b.value)
    three_steps = tiny_viva.predict(batch, num_steps=3).value
    assert three_steps.shape == (3,) and not torch.equal(three_steps, a.value), "num_steps is used"


def test_images_and_cached_latents_agree(tiny_viva):
    images = {c: torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8) for c in tiny_viva.config.cameras}
    latents = tiny_viva.encode_images(images)
    base = dict(task_id=torch.zeros(2, dtype=torch.long), state=torch.zeros(2, 6))
    from_images = tiny_viva.predict(ValueBatch(images=images, **base))
    from_latents = tiny_viva.predict(ValueBatch(image_latents=latents, **base))
    assert torch.allclose(from_images.value, from_latents.value)


def test_loss_gradient_is_zero_on_condition_outputs(tiny_viva):
    batch = make_batch(tiny_viva)
    outputs = []
    handle = tiny_viva.transformer.register_forward_hook(lambda m, a, out: outputs.append(out[0]))
    try:
        loss = tiny_viva.loss(batch)["loss"]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(loss, outputs[0])
    assert torch.all(grad[:, :, :-2] == 0)
    assert grad[:, :, -2:].abs().sum() > 0


def test_missing_inputs_fail_clearly(tiny_viva):
    no_targets = ValueBatch(
        task_id=torch.zeros(1, dtype=torch.long),
        state=torch.zeros(1, 6),
        image_latents=random_latents(tiny_viva.config, 1, (12, 8, 8)),
    )
    with pytest.raises(ValueError, match="future_state"):
        tiny_viva.loss(no_targets)
    with pytest.raises(IndexError, match="task_id"):
        tiny_viva.predict(replace(no_targets, task_id=torch.full((1,), 3)))


def test_vae_is_frozen(tiny_viva):
    assert not any(p.requires_grad for p in tiny_viva.vae.parameters())
    tiny_viva.train()
    assert not tiny_viva.vae.vae.training


def test_cameras_come_from_config():
    torch.manual_seed(0)
    cfg = ValueModelConfig.preset("tiny", "viva", cameras=["left_wrist", "right_wrist", "high"], state_dim=14)
    model = ViVaModel(cfg)
    batch = make_batch(model, batch=2)
    assert model.loss(batch)["loss"].isfinite()
    assert model.predict(batch).future_state.shape == (2, 14)


def test_short_training_decreases_the_loss():
    torch.manual_seed(0)
    model = ViVaModel(synthetic_config("tiny", "viva"))
    # The value is a simple function of the state, the future state a shifted copy; 8 fixed samples.
    batch = make_batch(model, batch=8, seed=1)
    batch.value_target = batch.state[:, 0].clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    gen = torch.Generator().manual_seed(0)

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return np.mean([model.loss(batch, generator=g)["loss"].item() for _ in range(4)])

    before = eval_loss()
    for _ in range(60):
        loss = model.loss(batch, generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)


def test_a_sample_gets_the_same_value_at_any_batch_position(tiny_viva):
    # The seeded inference noise used to be drawn per batch row, so a frame's value depended on where it sat in
    # its inference batch: episode curves carried a component repeating with the batch size.
    batch = make_batch(tiny_viva, batch=5, seed=4)
    together = tiny_viva.predict(batch).value
    for k in (0, 3):
        alone = ValueBatch(
            task_id=batch.task_id[k : k + 1],
            image_latents={c: v[k : k + 1] for c, v in batch.image_latents.items()},
            state=batch.state[k : k + 1],
        )
        assert torch.allclose(tiny_viva.predict(alone).value, together[k : k + 1], atol=1e-5)


def test_a_target_weighted_zero_is_reported_but_not_trained():
    # The ablation without the future-state loss: the frame stays a target (noised, decoded) and its error is
    # still logged, but no gradient reaches the transformer's output there.
    config = synthetic_config("tiny", "viva", future_state_weight=0.0)
    model = ViVaModel(config)
    outputs = []
    handle = model.transformer.register_forward_hook(lambda m, a, out: outputs.append(out[0]))
    try:
        losses = model.loss(make_batch(model))
    finally:
        handle.remove()
    assert losses["loss_future_state"] > 0
    assert torch.allclose(losses["loss"], losses["loss_value"])
    (grad,) = torch.autograd.grad(losses["loss"], outputs[0])
    assert torch.all(grad[:, :, :-1] == 0) and grad[:, :, -1].abs().sum() > 0
