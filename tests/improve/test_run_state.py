from __future__ import annotations

import pytest

from improve.run_state import STATE_FILE, RunState, RunStateError


def test_round_trip_and_resume_point(tmp_path):
    state = RunState(run_name="night1", config_fingerprint="abc")
    state.mark_done(0, "collect", 12.5, episodes=8)
    state.mark_done(0, "refit_value", 3.0, value_version=1)
    state.save(tmp_path)
    loaded = RunState.load(tmp_path)
    assert loaded == state
    assert loaded.is_done(0, "collect") and not loaded.is_done(0, "label_advantages")
    assert loaded.round_outputs(0) == {"episodes": 8, "value_version": 1}
    assert loaded.latest_round_with("value_version") == 0
    assert loaded.latest_round_with("policy_version") is None


def test_marking_twice_records_once_and_unknown_stage_is_refused(tmp_path):
    state = RunState(run_name="n", config_fingerprint="f")
    state.mark_done(1, "deploy", 1.0)
    state.mark_done(1, "deploy", 2.0)
    assert state.completed == ["1:deploy"] and state.rounds_completed() == 1
    with pytest.raises(RunStateError, match="unknown stage"):
        state.mark_done(1, "celebrate", 0.0)


def test_missing_and_damaged_state(tmp_path):
    assert RunState.load(tmp_path) is None
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(RunStateError, match="not a vivarl run state"):
        RunState.load(tmp_path)


def test_latest_deployed_round_ignores_a_policy_trained_but_not_deployed():
    state = RunState(run_name="n", config_fingerprint="f")
    state.mark_done(0, "train_policy", 1.0, policy_checkpoint="p/v000000", policy_version=0)
    state.mark_done(0, "deploy", 1.0, deployed="v000000")
    state.mark_done(1, "train_policy", 1.0, policy_checkpoint="p/v000001", policy_version=1)
    assert state.latest_round_with("deployed") == 0
    assert state.round_outputs(state.latest_round_with("deployed"))["policy_checkpoint"] == "p/v000000"
    assert RunState(run_name="n", config_fingerprint="f").latest_round_with("deployed") is None
