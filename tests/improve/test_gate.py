"""The round driver's promotion gate on a hand-made run state: no Ray, no arms (their weights are recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import compose_config

from improve.driver import RoundDriver
from improve.run_state import RunState


def driver_with_rounds(tmp_path: Path, *overrides: str) -> tuple[RoundDriver, list[tuple[str, str]]]:
    config = compose_config(f"run_dir={tmp_path / 'run'}", *overrides)
    driver = RoundDriver(config)
    sent: list[tuple[str, str]] = []
    driver._deploy = lambda checkpoint, version: sent.append((checkpoint, version))  # type: ignore[method-assign]
    return driver, sent


def evaluated(state: RunState, r: int, successes: int, episodes: int = 100) -> None:
    checkpoint = f"/ckpt/v{r:06d}"
    outcomes = {str(1_000_000_000 + k): int(k < successes) for k in range(episodes)}
    state.round_outputs(r).update(policy_version=r, policy_checkpoint=checkpoint, eval_outcomes=outcomes)


def test_a_broken_candidate_is_not_deployed_and_the_incumbent_stays(tmp_path):
    driver, sent = driver_with_rounds(tmp_path)
    evaluated(driver.state, 0, successes=40)
    assert driver._stage_deploy(0)["deployed"] == "v000000"
    driver.state.round_outputs(0).update(driver._stage_deploy(0))
    # Round 1's policy (e.g. trained one step) solves nothing on the seeds the incumbent solved 40 of.
    evaluated(driver.state, 1, successes=0)
    outputs = driver._stage_deploy(1)
    assert outputs["gate"]["promoted"] is False and outputs["gate"]["candidate"] == "v000001"
    assert outputs["deployed"] == "v000000" and outputs["deployed_eval_round"] == 0
    assert sent[-1] == ("/ckpt/v000000", "v000000"), "the arms must get the incumbent back"
    driver.state.round_outputs(1).update(outputs)
    # The next candidate is compared with the incumbent's own evaluation, not with the rejected one's.
    evaluated(driver.state, 2, successes=45)
    outputs = driver._stage_deploy(2)
    assert outputs["gate"]["promoted"] is True and outputs["gate"]["incumbent"] == "v000000"
    assert outputs["gate"]["reference_rate"] == 0.4 and outputs["deployed"] == "v000002"


def test_the_gate_rule_always_deploys_every_new_policy(tmp_path):
    driver, _ = driver_with_rounds(tmp_path, "loop.gate.rule=always")
    evaluated(driver.state, 0, successes=40)
    driver.state.round_outputs(0).update(driver._stage_deploy(0))
    evaluated(driver.state, 1, successes=0)
    assert driver._stage_deploy(1)["deployed"] == "v000001"


def test_the_round_table_says_which_version_was_kept(tmp_path):
    from improve.report import evaluation_metrics, round_table

    driver, _ = driver_with_rounds(tmp_path)
    state = driver.state
    evaluated(state, 0, successes=40)
    state.round_outputs(0).update(driver._stage_deploy(0))
    evaluated(state, 1, successes=0)
    state.round_outputs(1).update(driver._stage_deploy(1))
    for r in (0, 1):
        state.round_outputs(r)["metrics"] = evaluation_metrics(state, r)
    metrics = state.round_outputs(1)["metrics"]
    assert metrics["eval/vs_round0_diff"] == -0.4 and metrics["eval/vs_round0_p"] < 1e-6
    assert metrics["gate/promoted"] == 0.0
    from rich.console import Console

    console = Console(width=140, record=True)
    console.print(round_table(state))
    text = console.export_text()
    assert "kept v000000" in text and "40% [31-50]" in text and "-40 (0.00)" in text


def test_arm_utilisation_is_the_share_of_wall_time_each_arm_spent_in_episodes():
    from types import SimpleNamespace

    from improve.collection import arm_utilisation

    def record(arm, start, end):
        return SimpleNamespace(meta=SimpleNamespace(robot_id=arm, start_time=start, end_time=end))

    records = [record("a", 0.0, 30.0), record("a", 40.0, 70.0), record("b", 0.0, 10.0), record("gone", 0, 99)]
    records += [record("b", -50.0, -1.0), record("b", 95.0, 120.0)]  # before the window; half inside it
    shares = arm_utilisation(records, ["a", "b", "c"], window=(0.0, 100.0))
    assert shares == pytest.approx({"a": 0.6, "b": 0.15, "c": 0.0, "mean": 0.75 / 3})
    assert arm_utilisation(records, ["a"], window=(5.0, 5.0)) == {}


def test_a_learner_call_past_its_deadline_stops_the_run_naming_it(tmp_path):
    import time

    ray = pytest.importorskip("ray")

    @ray.remote(num_cpus=0)
    def hung_refit():
        time.sleep(3600)

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = compose_config(f"run_dir={tmp_path / 'run'}", "loop.learner_deadline_s=2")
        with pytest.raises(RuntimeError, match=r"the value refit gave no answer within 2 s.*resume"):
            RoundDriver(config)._learner_answer(None, hung_refit.remote, "value refit")
    finally:
        ray.shutdown()


def test_an_arm_call_past_its_deadline_stops_the_run_naming_the_arm(tmp_path):
    import time

    ray = pytest.importorskip("ray")

    @ray.remote(num_cpus=0)
    class Arm:
        def __init__(self, hangs: bool) -> None:
            self.hangs = hangs

        def ready(self) -> bool:
            return True

        def set_policy(self, packed, load_now=False):
            if self.hangs:
                time.sleep(3600)
            return packed

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = compose_config(f"run_dir={tmp_path / 'run'}", "loop.arm_call_deadline_s=2")
        driver = RoundDriver(config)
        driver.actors = {"sim0": Arm.remote(False), "sim1": Arm.remote(True)}
        ray.get([arm.ready.remote() for arm in driver.actors.values()])  # both started: only sim1 is slow
        with pytest.raises(
            RuntimeError, match=r"arm\(s\) sim1 gave no answer within 2 s while loading a policy"
        ):
            driver._send("weights")
        driver.actors.pop("sim1")
        driver._send("weights")  # the healthy arm answers at once
    finally:
        ray.shutdown()


def test_staleness_is_commit_to_label_and_training_to_first_rollout():
    from types import SimpleNamespace

    from improve.collection import staleness

    def record(round_, purpose, version, start, end):
        meta = SimpleNamespace(
            round=round_, purpose=purpose, policy_version=version, start_time=start, end_time=end
        )
        return SimpleNamespace(meta=meta)

    state = RunState(run_name="r", config_fingerprint="f")
    state.round_outputs(0).update(trained_at=100.0, policy_version=0)
    state.round_outputs(1).update(labelled_at=200.0, trained_at=300.0, policy_version=1)
    records = [
        record(0, "demo", "demo", 0.0, 10.0),
        record(1, "rollout", "v000000", 120.0, 150.0),  # waited 50 s for its label
        record(1, "rollout", "v000000", 110.0, 170.0),  # 30 s
        record(1, "rollout", "v000000", 160.0, 190.0),  # 10 s
        record(0, "eval", "v000000", 101.0, 105.0),  # an evaluation is no use on the arms' rollouts
    ]
    assert staleness(records, state, 1) == pytest.approx({"label_s": 30.0, "policy_first_use_s": 10.0})
    assert staleness(records, state, 0) == {}  # round 0 was never labelled here
