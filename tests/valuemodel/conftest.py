"""Shared fixtures for the value-model tests: one thread (the CI box is shared), tiny models built once."""

from __future__ import annotations

import pytest
import torch

from valuemodel.synthetic import synthetic_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_viva():
    from valuemodel.viva import ViVaModel

    torch.manual_seed(0)
    return ViVaModel(synthetic_config("tiny", "viva"))
