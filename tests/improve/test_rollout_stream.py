"""Rollouts collected ahead (loop.mode=continual) on a local Ray, with arms that commit synthetic episodes: the
stream stops at its limit, draws its own seeds, finishes the episodes under way when stopped, and an arm that
fails leaves it while the others go on."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from improve.collection import STREAM_SEED_OFFSET, RolloutStream, committed_episodes
from learners.value_data import synthetic_store_schema
from replay import Outcome, ReplayStore

ray = pytest.importorskip("ray")


@ray.remote(num_cpus=0)
class SyntheticArm:
    """Commits one short episode per seed asked for, taking ``seconds`` each; ``broken`` arms raise."""

    def __init__(self, name: str, url: str, seconds: float, broken: bool = False) -> None:
        self.name, self.store, self.seconds, self.broken = name, ReplayStore.open(url), seconds, broken

    def run_episodes(self, purpose: str, round: int, seeds: list[int]) -> list[dict]:
        if self.broken:
            raise RuntimeError("serial port /dev/ttyACM0 vanished")
        done = []
        for seed in seeds:
            time.sleep(self.seconds)
            writer = self.store.episode_writer(
                robot_id=self.name, round=round, policy_version="v000000", task="synthetic", purpose=purpose, seed=seed
            )  # fmt: skip
            with writer:
                for t in range(3):
                    image = np.zeros((32, 32, 3), np.uint8)
                    images = {"front": image, "wrist": image}
                    writer.add_step(images, np.zeros(6, np.float32), np.zeros(1, np.float32), t / 10)
                writer.commit(Outcome.SUCCESS, labelled_by="synthetic")
            done.append({"seed": seed})
        return done


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def stream(store: ReplayStore, arms: dict, limit: int) -> RolloutStream:
    return RolloutStream(store, arms, round_index=2, limit=limit, seed_base=200_000)


def test_the_stream_fills_its_limit_from_its_own_seeds_and_a_broken_arm_leaves_it(tmp_path, local_ray):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    arms = {"a": SyntheticArm.remote("a", url, 0.05), "b": SyntheticArm.remote("b", url, 0.05, broken=True)}
    running = stream(store, arms, limit=4).start()
    deadline = time.monotonic() + 600  # generous: actors start slowly on a loaded machine
    while len(committed_episodes(store, 2, "rollout")) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.stop() == 4
    records = committed_episodes(store, 2, "rollout")
    assert len(records) == 4 and {r.meta.robot_id for r in records} == {"a"}
    band = 200_000 + STREAM_SEED_OFFSET
    seeds = sorted(r.meta.seed for r in records)  # the broken arm's seed is spent, never reused
    assert len(set(seeds)) == 4 and band <= seeds[0] and seeds[-1] <= band + 4
    assert "serial port /dev/ttyACM0 vanished" in running.left["b"]
    # A new stream for the same round (a resumed driver) goes on from the seeds already committed.
    again = stream(store, {"a": arms["a"]}, limit=5).start()
    assert again.stop() == 1
    assert max(r.meta.seed for r in committed_episodes(store, 2, "rollout")) == seeds[-1] + 1


def test_stopping_early_lets_the_episodes_under_way_finish(tmp_path, local_ray):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    arms = {name: SyntheticArm.remote(name, url, 0.5) for name in ("a", "b")}
    running = stream(store, arms, limit=100).start()
    time.sleep(0.2)
    episodes = running.stop()  # both arms are mid-episode: stop waits for them, asks for no more
    assert 2 <= episodes < 100
    assert len(committed_episodes(store, 2, "rollout")) == episodes
    assert store.in_flight(stale_after_s=0.0) == []  # nothing torn


def test_a_stream_that_fails_hands_the_arms_back_and_says_why(tmp_path, local_ray):
    url = str(tmp_path / "replay")
    store = ReplayStore.create(url, synthetic_store_schema(image_size=32))
    # "z" is no actor at all: asking it fails in the stream's own thread, after arm "a" was asked.
    arms = {"a": SyntheticArm.remote("a", url, 0.3), "z": object()}
    running = stream(store, arms, limit=10).start()
    assert running.stop() == 1  # arm a's episode under way was waited for, and no more asked
    assert isinstance(running.error, AttributeError)
    assert len(committed_episodes(store, 2, "rollout")) == 1


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
    running = stream(store, {"a": SyntheticArm.remote("a", url, 0.1)}, limit=10_000).start()

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
