from dataclasses import replace

import numpy as np
import pytest
import torch

from valuemodel.config import ValueModelConfig
from valuemodel.interface import ValueBatch, ValueModel
from valuemodel.static import StaticValueModel
from valuemodel.synthetic import synthetic_config


def test_static_baseline_learns_a_value():
    torch.manual_seed(0)
    cfg = synthetic_config("tiny", "static", static_channels=8, static_hidden=64)
    model = StaticValueModel(cfg)
    assert isinstance(model, ValueModel)
    g = torch.Generator().manual_seed(0)
    images = {c: torch.randint(0, 256, (16, 3, 48, 48), dtype=torch.uint8, generator=g) for c in cfg.cameras}
    state = torch.rand(16, 6, generator=g) * 2 - 1
    batch = ValueBatch(task_id=torch.zeros(16, dtype=torch.long), images=images, state=state,
                       value_target=state[:, 0] * 0.8)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3])
    pred = model.predict(batch)
    assert pred.value.shape == (16,) and pred.future_state is None


def test_a_model_is_not_built_before_the_robot_fills_in_its_cameras_and_state():
    open_config = ValueModelConfig.preset("tiny", "static")
    with pytest.raises(
        ValueError, match=r"valuemodel.cameras and valuemodel.state_dim are left to the robot"
    ):
        StaticValueModel(open_config)
    filled = open_config.with_robot_spec(["top", "wrist", "front"], 7)
    assert (filled.cameras, filled.state_dim, filled.left_to_robot()) == (["top", "wrist", "front"], 7, [])
    chosen = replace(open_config, cameras=["wrist"]).with_robot_spec(["top", "wrist"], 7)
    assert chosen.cameras == ["wrist"], "cameras the config names are kept"
    assert StaticValueModel(filled).config.cameras == ["top", "wrist", "front"]
