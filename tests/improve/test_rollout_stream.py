"""Rollouts collected ahead (loop.mode=continual) on a local Ray, with arms that commit synthetic episodes: the
stream stops at its limit, draws its own seeds, finishes the episodes under way when stopped, and an arm that
fails leaves it while the others go on."""

from __future__ import annotations

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
