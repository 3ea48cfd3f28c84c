"""Tiny ViVa trained on synthetic progress videos must order held-out expert frames (VOC >= 0.9) on CPU."""

import time

import numpy as np
import pytest
import torch

from valuemodel.config import ValueModelConfig
from valuemodel.metrics import voc
from valuemodel.synthetic import SyntheticValueData, make_episode
from valuemodel.viva import ViVaModel

MAX_LEN = 60


@pytest.mark.slow
def test_tiny_viva_reaches_voc_on_held_out_experts():
    start = time.monotonic()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = SyntheticValueData(
        [make_episode(rng, k) for k in ["expert"] * 8 + ["failure"] * 3],
        horizon=10,
        max_episode_length=MAX_LEN,
    )
    held_out = [make_episode(rng, "expert") for _ in range(3)]
    test = SyntheticValueData(held_out, horizon=10, max_episode_length=MAX_LEN)
    model = ViVaModel(ValueModelConfig.preset("tiny", "viva", horizon=10))
    train.cache_latents(model.encode_images)
    test.cache_latents(model.encode_images)

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = model.loss(train.batch(rng.integers(0, len(train), 32)), generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    vocs = [
        voc(model.predict(test.batch(np.flatnonzero(test.episode_of == e))).value.numpy()) for e in range(3)
    ]
    assert np.mean(vocs) >= 0.9 and min(vocs) >= 0.8, vocs
    assert time.monotonic() - start < 240
