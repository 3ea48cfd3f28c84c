"""Each role logs its own W&B run from its own process: the offline run files hold the arm's episode series, the
policy learner's and the value learner's loss per logged step and their published versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.robot_actor import ActorSettings, RobotWorker
from learners.policy_actor import PolicyLearnerActor
from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearnerConfig
from learners.value_actor import ValueLearnerActor
from learners.value_learner import ValueLearnerConfig
from policy import PolicyConfig
from replay import ReplayStore
from robot_io import RobotConfig, SimBoxConfig
from telemetry import RunTelemetry, WandbConfig
from valuemodel import ValueModelConfig

pytest.importorskip("wandb")


def history(run_dir: Path, name: str) -> list[dict]:
    """The logged rows of the offline run ``name`` (W&B's own record format, read with W&B's own reader)."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (path,) = run_dir.glob(f"wandb/offline-run-*-{name}/run-{name}.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    rows = []
    while (data := store.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def test_every_role_writes_its_own_step_series(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"

    def role(name: str, member: str = "") -> RunTelemetry:
        return RunTelemetry(WandbConfig(mode="offline"), "night1", str(run_dir), name, member)

    url = str(tmp_path / "replay")
    sim = SimBoxConfig(cameras=["front", "wrist"], image_height=32, image_width=32, max_steps=40)
    arm = RobotWorker(
        ActorSettings(
            RobotConfig(type="sim_box", name="sim0", sim_box=sim),
            url,
            "box_assembly",
            telemetry=role("actor", "sim0"),
        )
    )
    arm.run_episodes("demo", 0, [0, 1, 2])
    arm.close()
    label_store(ReplayStore.open(url), LabellingConfig(run="lab0", horizon=10))

    policy = PolicyConfig(
        cameras=["front", "wrist"], image_size=32, chunk_size=4, execute_steps=2, encoder_channels=8,
        feature_dim=32, hidden_dim=64,
    )  # fmt: skip
    learner = PolicyLearnerActor(
        PolicyLearnerConfig(
            store_url=url, checkpoint_dir=str(tmp_path / "policy"), policy=policy, labelling_run="lab0",
            steps=4, batch_size=4, log_every=2,
        ),
        role("policy_learner"),
    )  # fmt: skip
    learner.train_round(0, "lab0")
    learner.wandb.finish()

    value_config = ValueLearnerConfig(
        store_url=url, checkpoint_root=str(tmp_path / "value"), steps=4, batch_size=4, log_every=2,
        task_names=["box_assembly"], checkpoint_every=0, device="cpu",
    )  # fmt: skip
    model = ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32, tasks=["box assembly"])
    from dataclasses import asdict

    value = ValueLearnerActor(asdict(value_config), model.to_dict(), telemetry=role("value_learner"))
    value.refit(0)
    value.wandb.finish()

    episodes = history(run_dir, "night1-actor-sim0")
    assert [row["episode/index"] for row in episodes] == [1, 2, 3]
    assert all(row["episode/steps"] > 0 and "safety/clamped" in row for row in episodes)
    policy_rows = history(run_dir, "night1-policy_learner")
    assert [row["policy/loss"] for row in policy_rows if "policy/loss" in row][:2]
    assert [row["policy/published_version"] for row in policy_rows if "policy/published_version" in row] == [
        0
    ]
    value_rows = history(run_dir, "night1-value_learner")
    assert [row["value/train_step"] for row in value_rows if "value/loss" in row] == [2, 4]
    assert [row["value/published_version"] for row in value_rows if "value/published_version" in row] == [1]
