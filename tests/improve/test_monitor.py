"""W&B settings: one group per run and one job type per role; disabled means no W&B at all."""

from __future__ import annotations

import sys

import pytest

from improve.monitor import ROLES, RoundMonitor, WandbConfig, init_kwargs


def test_each_role_gets_its_own_job_type_in_the_runs_group(tmp_path):
    kwargs = [init_kwargs(WandbConfig(), "night1", tmp_path, role) for role in ROLES]
    assert {k["group"] for k in kwargs} == {"night1"}
    assert [k["job_type"] for k in kwargs] == list(ROLES)
    assert all(k["mode"] == "offline" and k["resume"] == "allow" for k in kwargs)
    assert len({k["id"] for k in kwargs}) == len(ROLES)
    with pytest.raises(ValueError, match="unknown W&B role"):
        init_kwargs(WandbConfig(), "night1", tmp_path, "janitor")


def test_disabled_wandb_never_imports_it_and_logging_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb would now fail
    monitor = RoundMonitor(WandbConfig(mode="disabled"), "night1", tmp_path, {})
    assert not monitor.enabled
    monitor.log_round(0, {"eval/success_rate": 0.5})
    monitor.finish()
    assert init_kwargs(WandbConfig(mode="disabled"), "night1", tmp_path, "actor") == {}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="wandb.mode must be one of"):
        WandbConfig(mode="sometimes")
