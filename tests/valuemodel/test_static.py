import numpy as np
import torch

from valuemodel.config import ValueModelConfig
from valuemodel.interface import ValueBatch, ValueModel
from valuemodel.static import StaticValueModel


def test_static_baseline_learns_a_value():
    torch.manual_seed(0)
    cfg = ValueModelConfig.preset("tiny", "static", static_channels=8, static_hidden=64)
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
