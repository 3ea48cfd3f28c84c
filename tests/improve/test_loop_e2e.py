"""The `vivarl` command end to end on the embedded default with the smallest settings (slow: minutes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from improve.collection import committed_episodes
from improve.run_state import STAGES, RunState
from replay import ReplayStore

pytestmark = pytest.mark.slow
VIVARL = str(Path(sys.executable).with_name("vivarl"))
SMALL = [
    "loop.rounds=1",
    "loop.demo_episodes=4",
    "loop.episodes_per_round=3",
    "loop.eval_episodes=2",
    "value_learner.steps=20",
    "value_learner.warm_start_steps=10",
    "loop.backbone.vae_steps=10",
    "loop.backbone.video_steps=10",
    "value_learner.checkpoint_every=10",
    "policy_learner.steps=30",
    "robots.sim0.sim_box.max_steps=120",
    "robots.sim1.sim_box.max_steps=120",
    "wandb.mode=offline",
]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen(
        [VIVARL, f"run_dir={run_dir}", *SMALL, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def assert_exact_counts(run_dir: Path) -> None:
    store = ReplayStore.open(str(run_dir / "replay"))
    assert len(committed_episodes(store, 0, "demo")) == 4
    assert len(committed_episodes(store, 1, "rollout")) == 3
    assert len(committed_episodes(store, 0, "eval")) == 2
    assert len(committed_episodes(store, 1, "eval")) == 2
    assert len(store.episode_ids()) == 11


def test_main_command_runs_rounds_and_prints_the_round_table(tmp_path):
    proc = start(tmp_path / "run")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    state = RunState.load(tmp_path / "run")
    assert state.completed == [f"{r}:{s}" for r in (0, 1) for s in STAGES]
    assert "vivarl run run" in out and "eval" in out
    assert_exact_counts(tmp_path / "run")
    metrics = state.rounds["1"]["metrics"]
    assert 0.0 <= metrics["eval/success_rate"] <= 1.0 and metrics["collect/intervention_rate"] >= 0.0
    assert (
        metrics["eval/success_ci_low"]
        <= metrics["eval/fixed_seed_success"]
        <= metrics["eval/success_ci_high"]
    )
    assert "eval/vs_round0_p" in metrics and "eval/vs_previous_diff" in metrics
    # Every round is evaluated on the same fixed seeds, disjoint from the training episodes' seeds.
    store = ReplayStore.open(str(tmp_path / "run" / "replay"))
    eval_seeds = [sorted(r.meta.seed for r in committed_episodes(store, k, "eval")) for k in (0, 1)]
    assert eval_seeds[0] == eval_seeds[1] == [1_000_000_000, 1_000_000_001]
    training = {
        r.meta.seed for k, p in ((0, "demo"), (1, "rollout")) for r in committed_episodes(store, k, p)
    }
    assert training.isdisjoint(eval_seeds[0])
    # Round 0 pretrained the value model's backbone on its own demonstrations, and later rounds used it.
    assert (tmp_path / "run" / "backbone" / "pretrain.json").is_file()
    assert state.rounds["0"]["backbone_dir"].endswith("backbone")
    assert state.rounds["1"]["gate"]["candidate"] == "v000001"
    assert state.rounds["0"]["collected_with"] == ["demo"]
    assert state.rounds["1"]["collected_with"] == [state.rounds["0"]["deployed"]]
    # Round 1's policy continued from the one deployed after round 0.
    assert state.rounds["1"]["policy_started_from"] == state.rounds["0"]["deployed_checkpoint"]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), "W&B offline runs should be written"
    assert (tmp_path / "run" / "media" / "round001_eval.mp4").stat().st_size > 0


def test_killed_mid_round_then_resumed_loses_and_duplicates_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    store_url = str(run_dir / "replay")
    deadline = time.monotonic() + 600
    # Kill the driver and its local Ray in the middle of round 1's collection.
    while time.monotonic() < deadline and proc.poll() is None:
        store_ready = (run_dir / "replay" / "store.json").exists()
        if store_ready and committed_episodes(ReplayStore.open(store_url), 1, "rollout"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = RunState.load(run_dir)
    assert not state.is_done(1, "collect")
    resumed = start(run_dir)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    assert "resuming" in out
    assert_exact_counts(run_dir)
    assert json.loads((run_dir / "run_state.json").read_text())["completed"][-1] == "1:deploy"


def test_a_value_model_the_arms_cannot_feed_is_refused_before_any_episode(tmp_path):
    # The simulated arms record 9 state values; the value learner's actor refuses 7 in its constructor, which Ray
    # would report only at its first call, after a round of recording.
    proc = start(tmp_path / "run", "valuemodel.state_dim=7")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "state_dim is 7" in out and "9 state values" in out, out[-3000:]
    store = tmp_path / "run" / "replay"
    assert not (store / "store.json").exists() or ReplayStore.open(str(store)).episode_ids() == []


def test_continual_mode_keeps_the_arms_in_episodes_through_the_learner_stages(tmp_path):
    """loop.mode=continual: from round 1 on the arms never stop. Round 2's rollouts start during round 1's learner
    stages with round 0's deployed policy; round 1's candidate is scored between rollouts on exactly the fixed
    seeds; round 1's labels leave round 2's rollouts out; nothing is collected past the last round."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, "loop.rounds=2", "loop.mode=continual", "valuemodel=static")
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out
    assert "arms in episodes from now on (loop.mode=continual): round 1's rollouts with" in out
    state = RunState.load(run_dir)
    store = ReplayStore.open(str(run_dir / "replay"))
    deployed = [state.rounds[str(r)]["deployed"] for r in range(3)]
    round1, round2 = (committed_episodes(store, r, "rollout") for r in (1, 2))
    assert sum(x.meta.policy_version == deployed[0] for x in round1) >= 3
    assert sum(x.meta.policy_version == deployed[1] for x in round2) >= 3
    assert committed_episodes(store, 3, "rollout") == []
    # Every round is scored on the same 2 fixed seeds, each exactly once.
    scored = [sorted(x.meta.seed for x in committed_episodes(store, r, "eval")) for r in range(3)]
    assert len(scored[0]) == 2 and scored[1] == scored[0] and scored[2] == scored[0]
    # Round 2's rollouts began while round 1's learners worked, before its candidate was scored.
    evaluation_started = min(x.meta.start_time for x in committed_episodes(store, 1, "eval"))
    early = [x for x in round2 if x.meta.end_time <= evaluation_started]
    assert early and {x.meta.policy_version for x in early} == {deployed[0]}
    # Every episode names the policy it ran.
    assert all(x.meta.policy_version not in ("", "none") for x in [*round1, *round2])
    labelled_in_1 = store.derived_episode_ids("indicator", state.rounds["1"]["labelling_run"])
    assert labelled_in_1 and not {x.meta.episode_id for x in round2} & labelled_in_1
    assert state.rounds["2"]["collected_with"] == sorted({x.meta.policy_version for x in round2})
    for r in (1, 2):
        assert state.rounds[str(r)]["metrics"]["arms/utilisation_mean"] > 0
    assert state.rounds["2"]["metrics"]["staleness/label_s"] > 0
