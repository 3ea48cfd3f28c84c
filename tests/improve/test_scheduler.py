"""The arm scheduler of loop.mode=continual on a local Ray, with arms that commit synthetic episodes: arms stay in
episodes, pick up a newly deployed policy at their next episode boundary, run a candidate's evaluation seeds in
between, get their policy again after a restart, and an arm that keeps failing leaves while the others go on."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from actors.weights import PackedCheckpoint
from improve.collection import CollectionError, committed_episodes
from improve.scheduler import STREAM_SEED_OFFSET, ArmScheduler, PolicyRegistry
from learners.value_data import synthetic_store_schema
from replay import Outcome, ReplayStore

ray = pytest.importorskip("ray")


@ray.remote(num_cpus=0, max_restarts=1, max_task_retries=0)
class SyntheticArm:
    """Commits one short episode per seed, taking ``seconds`` each, with the policy it was last sent (as a robot
    actor does; a restarted one has none); ``broken`` arms raise."""

    def __init__(self, name: str, url: str, seconds: float, broken: bool = False) -> None:
        self.name, self.store, self.seconds, self.broken = name, ReplayStore.open(url), seconds, broken
        self.policy: str | None = None
        self.loads: list[str] = []

    def run_episodes(self, purpose: str, round: int, seeds: list[int], policy=None) -> list[dict]:
        if self.broken:
            raise RuntimeError("serial port /dev/ttyACM0 vanished")
        if policy is not None:
            self.policy = policy.version
            self.loads.append(policy.version)
        if self.policy is None:
            raise RuntimeError(f"arm '{self.name}' has no policy yet")
        done = []
        for seed in seeds:
            writer = self.store.episode_writer(
                robot_id=self.name, round=round, policy_version=self.policy, task="synthetic", purpose=purpose,
                seed=seed,
            )  # fmt: skip
            with writer:
                for t in range(3):
                    time.sleep(self.seconds / 3)
                    image = np.zeros((32, 32, 3), np.uint8)
                    images = {"front": image, "wrist": image}
                    writer.add_step(images, np.zeros(6, np.float32), np.zeros(1, np.float32), t / 10)
                writer.commit(Outcome.SUCCESS, labelled_by="synthetic")
            done.append({"seed": seed})
        return done

    def info(self) -> dict:
        return {"loads": list(self.loads), "pid": os.getpid()}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def policy(version: str) -> PackedCheckpoint:
    return PackedCheckpoint(version=version, files={"policy.json": version.encode()})


def registry_with(*versions: str) -> PolicyRegistry:
    registry = PolicyRegistry()
    for version in versions:
        registry.publish(version, policy(version))
    registry.deploy(versions[0])
    return registry


def scheduler(store: ReplayStore, arms: dict, registry: PolicyRegistry, **options) -> ArmScheduler:
    return ArmScheduler(
        store, arms, registry, seed_base=lambda r: r * 100_000, rollout_round=2, poll_s=0.05, **options
    )


def two_arms(tmp_path, episode_s: float):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    return store, {name: SyntheticArm.remote(name, url, episode_s) for name in ("a", "b")}


def wait_for(condition, seconds: float = 600.0) -> None:
    deadline = time.monotonic() + seconds  # generous: actors start slowly on a loaded machine
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_deployed_policy_reaches_each_arm_at_its_next_episode_boundary(tmp_path, local_ray):
    store, arms = two_arms(tmp_path, 0.15)
    registry = registry_with("v000001", "v000002")
    running = scheduler(store, arms, registry).start()
    wait_for(lambda: len(committed_episodes(store, 2, "rollout")) >= 4)
    registry.deploy("v000002")
    deployed_at = time.time()
    records = running.collect_rollouts(2, "v000002", target=3)
    assert sum(r.meta.policy_version == "v000002" for r in records) >= 3
    assert {r.meta.policy_version for r in records} == {"v000001", "v000002"}
    # No episode ran the new policy before it was deployed, and none the old one after an arm's boundary.
    assert all(r.meta.start_time >= deployed_at - 0.2 for r in records if r.meta.policy_version == "v000002")
    # The arms went on with round 3's rollouts, with the new policy, and were sent each version once.
    wait_for(lambda: len(committed_episodes(store, 3, "rollout")) >= 2)
    running.stop()
    assert {r.meta.policy_version for r in committed_episodes(store, 3, "rollout")} == {"v000002"}
    for arm in arms.values():
        assert ray.get(arm.info.remote())["loads"] == ["v000001", "v000002"]
    band = 2 * 100_000 + STREAM_SEED_OFFSET
    seeds = [r.meta.seed for r in records]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= band
    assert store.in_flight(stale_after_s=0.0) == []  # stop waited for the episodes under way


def test_a_candidate_is_evaluated_on_exactly_its_seeds_between_rollouts(tmp_path, local_ray):
    store, arms = two_arms(tmp_path, 0.1)
    registry = registry_with("v000001", "v000002")
    running = scheduler(store, arms, registry).start()
    wait_for(lambda: len(committed_episodes(store, 2, "rollout")) >= 2)
    evaluation = running.evaluate(1, "v000002", [7, 8, 9, 10, 11])
    assert sorted(r.meta.seed for r in evaluation) == [7, 8, 9, 10, 11]
    assert {r.meta.policy_version for r in evaluation} == {"v000002"}
    # Back to rollouts with the deployed policy (the candidate was not deployed).
    after = len(committed_episodes(store, 2, "rollout"))
    wait_for(lambda: len(committed_episodes(store, 2, "rollout")) >= after + 2)
    running.stop()
    later = [r for r in committed_episodes(store, 2, "rollout") if r.meta.start_time > max(
        e.meta.end_time for e in evaluation)]  # fmt: skip
    assert later and {r.meta.policy_version for r in later} == {"v000001"}
    with pytest.raises(KeyError, match="never published"):
        running.evaluate(1, "v000009", [1])


def test_a_broken_arm_leaves_and_a_restarted_arm_gets_its_policy_again(tmp_path, local_ray):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    arms = {
        "a": SyntheticArm.remote("a", url, 0.1),
        "b": SyntheticArm.remote("b", url, 0.1, broken=True),
    }
    left: dict = {}
    registry = registry_with("v000001")
    running = scheduler(
        store, arms, registry, max_arm_failures=2, on_set_aside=left.__setitem__, retry_after_s=0.1
    ).start()
    wait_for(lambda: "b" in left)
    assert "failed 2 times: serial port /dev/ttyACM0 vanished" in left["b"]
    # Arm a is killed between episodes; Ray restarts it without a policy, and its next call brings one.
    pid = ray.get(arms["a"].info.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    evaluation = running.evaluate(1, "v000001", [3, 4, 5])
    assert sorted(r.meta.seed for r in evaluation) == [3, 4, 5]
    assert {r.meta.robot_id for r in evaluation} == {"a"}
    assert ray.get(arms["a"].info.remote())["pid"] != pid
    running.stop()
    assert all(r.meta.robot_id == "a" for r in committed_episodes(store, 2, "rollout"))


def test_with_every_arm_set_aside_a_stage_fails_naming_them(tmp_path, local_ray):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    arms = {"b": SyntheticArm.remote("b", url, 0.1, broken=True)}
    running = scheduler(store, arms, registry_with("v000001"), max_arm_failures=1, retry_after_s=0.1).start()
    with pytest.raises(CollectionError, match="every arm was set aside.*b: failed 1 times: serial port"):
        running.collect_rollouts(2, "v000001", target=1)
    running.stop()


def test_rollouts_ahead_stop_at_the_limit_until_their_collect_stage(tmp_path, local_ray):
    store, arms = two_arms(tmp_path, 0.05)
    running = scheduler(store, arms, registry_with("v000001"), rollout_limit=3).start()
    wait_for(lambda: len(committed_episodes(store, 2, "rollout")) >= 3)
    time.sleep(0.5)
    assert len(committed_episodes(store, 2, "rollout")) == 3
    assert len(running.collect_rollouts(2, "v000001", target=5)) >= 5  # its own collect is not limited
    running.stop()


def test_the_registry_refuses_a_version_never_published():
    registry = PolicyRegistry()
    with pytest.raises(KeyError, match="v000004 was never published"):
        registry.deploy("v000004")
    registry.publish("v000004", policy("v000004"))
    registry.deploy("v000004")
    assert registry.deployed().version == "v000004" and "v000004" in registry.deployed_at


def test_a_value_learner_killed_mid_refit_is_asked_again_while_the_arms_collect(tmp_path, local_ray):
    """kill -9 of the value learner mid-refit: the arm goes on collecting, Ray restarts the learner, the driver's
    call asks it again, and the refit resumes from its training checkpoint; one version, each episode labelled
    once."""
    from improve.driver import answer_with_restarts
    from learners.value_actor import launch_value_learner
    from learners.value_data import write_synthetic_store
    from learners.value_learner import ValueLearnerConfig
    from replay import EpisodeFilter
    from valuemodel.checkpoint import list_versions, load_norm_stats
    from valuemodel.config import ValueModelConfig

    url, root = str(tmp_path / "replay"), tmp_path / "value"
    store, kinds = write_synthetic_store(url, ["expert", "retry", "failure", "expert"])
    config = ValueLearnerConfig(
        store_url=url, checkpoint_root=str(root), steps=300, batch_size=8, task_names=["synthetic"],
        log_every=0, device="cpu", checkpoint_every=5,
    )  # fmt: skip
    model = ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32, static_channels=8)
    learner = launch_value_learner(config, model, max_restarts=1)
    pid = ray.get(learner.info.remote())["pid"]
    running = scheduler(store, {"a": SyntheticArm.remote("a", url, 0.1)}, registry_with("v000001")).start()

    def ask(call):
        return answer_with_restarts(
            learner,
            call,
            "value refit",
            deadline_s=300,
            restarts=1,
            on_restart=lambda attempt, why: restarts.append(why),
        )

    restarts: list = []
    answer: dict = {}
    refit = threading.Thread(target=lambda: answer.update(version=ask(lambda: learner.refit.remote(0, True))))
    refit.start()
    deadline = time.monotonic() + 120
    while not (root / "train_state" / "state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (root / "train_state" / "state.pt").exists(), "the refit wrote no training checkpoint"
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    refit.join(timeout=300)
    running.stop()

    assert answer == {"version": 1} and len(restarts) == 1
    restarted = ray.get(learner.info.remote())
    assert restarted["pid"] != pid
    # While no learner process was up (from the kill until the new one started), the arm went on committing.
    ends = [r.meta.end_time for r in committed_episodes(store, 2, "rollout")]
    assert any(killed_at < end < restarted["started_at"] for end in ends), (
        "the arm stopped while the learner was down"
    )
    assert list_versions(root) == [1]
    assert load_norm_stats(root)["provenance"]["steps"] == config.steps
    # The restarted learner went on from the checkpoint, it did not train all the steps again.
    assert 0 < ray.get(learner.metrics.remote())["steps"] < config.steps
    training = EpisodeFilter(rounds=(0,)).to_dict()
    assert ask(lambda: learner.label.remote(1, training)) == len(kinds)
    assert ask(lambda: learner.label.remote(1, training)) == 0  # nothing labelled twice
    ray.kill(learner)


@ray.remote(num_cpus=0, max_restarts=0)
class MortalLearner:
    def info(self) -> dict:
        return {"pid": os.getpid()}

    def train(self) -> int:
        time.sleep(60)
        return 1


def test_a_learner_that_ray_will_not_restart_stops_the_call_with_what_to_do(local_ray):
    from improve.driver import answer_with_restarts

    learner = MortalLearner.remote()
    pid = ray.get(learner.info.remote())["pid"]
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(
        RuntimeError,
        match="died during the policy training and Ray will not restart it.*run the same command to resume",
    ):
        answer_with_restarts(
            learner, lambda: learner.train.remote(), "policy training", deadline_s=120, restarts=3
        )
