from __future__ import annotations

import pytest
from episode_data import SCHEMA

from replay import ReplayStore


@pytest.fixture
def store(tmp_path) -> ReplayStore:
    return ReplayStore.create(str(tmp_path / "store"), SCHEMA)
