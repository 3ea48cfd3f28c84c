import numpy as np
import pytest
import torch

from valuemodel.interface import ValueBatch
from valuemodel.synthetic import synthetic_config
from valuemodel.wvm import FLAT, KEEP, REVERSED, WorldValueModel, merge_value_chunks, rewind_windows


@pytest.fixture(scope="module")
def wvm():
    torch.manual_seed(0)
    return WorldValueModel(synthetic_config("tiny", "wvm"))


def window_batch(model, batch=2, frames=None, seed=0):
    cfg = model.config
    frames = frames or cfg.window_frames
    g = torch.Generator().manual_seed(seed)
    latents = {c: torch.randn(batch, frames, *model.latent_shape, generator=g) for c in cfg.cameras}
    values = torch.linspace(-1, 1, frames).expand(batch, -1).clone()
    return ValueBatch(
        task_id=torch.zeros(batch, dtype=torch.long), video_latents=latents, value_window=values
    )


def test_video_never_sees_value_tokens(wvm):
    # Open the adaLN-zero gates, which start closed (each value block begins as the identity).
    with torch.no_grad():
        for block in wvm.value_stream.blocks:
            block.modulation.bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    batch = window_batch(wvm)
    video = wvm.to_video(wvm.window_latents(batch))
    sigma = torch.full((2,), 0.7)
    values_a = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    values_b = values_a + 3.0
    video_a, value_a = wvm.velocities(video, values_a, sigma, batch.task_id)
    video_b, value_b = wvm.velocities(video, values_b, sigma, batch.task_id)
    assert torch.equal(video_a, video_b)
    assert not torch.allclose(value_a, value_b)
    # ...while the value stream does see the video.
    _, value_c = wvm.velocities(video + 1.0, values_a, sigma, batch.task_id)
    assert not torch.allclose(value_a, value_c)


def test_loss_and_predict_shapes(wvm):
    batch = window_batch(wvm)
    losses = wvm.loss(batch)
    assert set(losses) == {"loss", "loss_value", "loss_video"} and losses["loss"].isfinite()
    wvm.eval()
    pred = wvm.predict(window_batch(wvm, frames=wvm.config.prefix_frames + wvm.config.chunk))
    wvm.train()
    assert pred.value_chunk.shape == (2, 4) and torch.equal(pred.value, pred.value_chunk[:, -1])
    assert pred.future_state is None
    with pytest.raises(ValueError, match="9 frames"):
        wvm.loss(window_batch(wvm, frames=5))


def test_rewind_windows():
    frames = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1) + torch.zeros(2, 5, 3)
    labels = torch.linspace(0, 1, 5).expand(2, 5)
    out_f, out_l = rewind_windows(frames, labels, torch.tensor([FLAT, REVERSED]), present=2)
    assert torch.all(out_f[0] == frames[0, 2]) and torch.all(out_l[0] == labels[0, 2])
    assert torch.equal(out_f[1], frames[1].flip(0)) and torch.equal(out_l[1], labels[1].flip(0))
    same_f, same_l = rewind_windows(frames, labels, torch.tensor([KEEP, KEEP]), present=2)
    assert torch.equal(same_f, frames) and torch.equal(same_l, labels)


def test_merge_value_chunks():
    chunks = np.array([[0.0, 1.0], [2.0, 3.0]])
    merged = merge_value_chunks(chunks, np.array([1, 2]), length=4)
    assert merged[:3].tolist() == [0.0, 1.5, 3.0] and np.isnan(merged[3])


def test_short_training_decreases_the_loss():
    torch.manual_seed(0)
    model = WorldValueModel(synthetic_config("tiny", "wvm", rewind_prob=0.0, prefix_noise_prob=0.0))
    batch = window_batch(model, batch=4, seed=3)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    gen = torch.Generator().manual_seed(0)

    def eval_loss():
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            return np.mean([model.loss(batch, generator=g)["loss"].item() for _ in range(3)])

    before = eval_loss()
    for _ in range(30):
        loss = model.loss(batch, generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.7 * before


def test_save_load_round_trip(wvm, tmp_path):
    wvm.eval()
    batch = window_batch(wvm, frames=wvm.config.prefix_frames + wvm.config.chunk)
    expected = wvm.predict(batch).value_chunk
    wvm.save(tmp_path / "wvm")
    loaded = WorldValueModel.load(tmp_path / "wvm")
    assert torch.equal(loaded.predict(batch).value_chunk, expected)
    wvm.train()


def test_a_window_gets_the_same_values_at_any_batch_position(wvm):
    # Initial value/video noise and the random prefix used to be drawn per batch row, so predictions depended on
    # the row: WVM's episode curves repeated with the inference batch size.
    wvm.eval()
    cfg = wvm.config
    batch = window_batch(wvm, batch=5, frames=cfg.prefix_frames + cfg.chunk, seed=2)
    batch.value_window = None
    together = wvm.predict(batch).value_chunk
    for k in (0, 3):
        alone = ValueBatch(
            task_id=batch.task_id[k : k + 1],
            video_latents={c: v[k : k + 1] for c, v in batch.video_latents.items()},
        )
        assert torch.allclose(wvm.predict(alone).value_chunk, together[k : k + 1], atol=1e-5)
    wvm.train()


def test_prefix_free_windows():
    # prefix_frames=0 (an ablation of the prefix chain): windows are h current + h future frames, no value condition.
    torch.manual_seed(0)
    model = WorldValueModel(synthetic_config("tiny", "wvm", prefix_frames=0))
    assert model.config.window_frames == 8
    losses = model.loss(window_batch(model, seed=1), generator=torch.Generator().manual_seed(0))
    assert losses["loss"].isfinite() and losses["loss_value"] > 0
    model.eval()
    batch = window_batch(model, frames=4, seed=1)
    pred = model.predict(batch)
    batch.value_window = batch.value_window + 5.0  # no prefix, so the given values cannot matter
    torch.testing.assert_close(model.predict(batch).value_chunk, pred.value_chunk)
    assert pred.value_chunk.shape == (2, 4)
