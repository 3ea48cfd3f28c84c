"""Robot actors on a real (local) Ray: a crash mid-episode, the restart, and exact recollection."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actors.robot_actor import ActorSettings, launch_robot_actors
from improve.collection import collect, committed_episodes
from replay import FrameIndex, ReplayStore
from robot_io import RobotConfig, SimBoxConfig

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, resources={"robot:sim0": 1.0}, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_actor_killed_mid_episode_restarts_and_the_torn_episode_is_never_sampled(local_ray, tmp_path):
    url = str(tmp_path / "replay")
    robot = RobotConfig(type="sim_box", name="sim0", sim_box=SimBoxConfig(image_height=32, image_width=32))
    actor = launch_robot_actors(
        [ActorSettings(robot=robot, store_url=url, task="box_assembly")], max_restarts=2
    )["sim0"]
    pid = ray.get(actor.info.remote())["pid"]
    # More seeds than the test needs, so the task is still running whenever the kill lands (a 32x32 episode
    # can finish within one heartbeat interval, so its flushed-step count is not waited for).
    running = actor.run_episodes.remote("demo", 0, list(range(8)))
    store = ReplayStore.open(url)
    deadline = time.monotonic() + 120
    # Wait until a later episode is being written after at least one was committed, then kill the arm's process.
    committed_before_kill = 0
    while time.monotonic() < deadline:
        writing = [e for e in store.in_flight() if e.status == "writing"]
        committed_before_kill = len(store.episode_ids())
        if writing and committed_before_kill >= 1:
            break
        time.sleep(0.05)
    assert committed_before_kill >= 1, "the actor committed no episode within the deadline"
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(running)

    # The restarted actor runs its constructor again; the stage asks for exactly the missing episodes.
    target = committed_before_kill + 2
    records = collect(
        store, {"sim0": actor}, round_index=0, purpose="demo", target=target, seed_base=0, max_attempts=3
    )
    assert len(records) == target == len(committed_episodes(store, 0, "demo"))
    assert ray.get(actor.info.remote())["pid"] != pid
    torn = [e for e in store.in_flight() if e.status == "torn"]
    assert torn, "the killed writer's episode should be reported torn"
    index = FrameIndex(store)
    index.refresh()
    assert {e.episode_id for e in torn}.isdisjoint(index.episode_ids)
    assert set(index.episode_ids) == {r.meta.episode_id for r in records}


def collect_beside_a_healthy_arm(tmp_path, bad_arm, **collect_kwargs) -> tuple[list, dict[str, str]]:
    """Round 0's demonstrations on a simulated arm ``sim0`` and ``bad_arm`` as ``arm1``; returns the records and
    the arms set aside with their reasons."""
    url = str(tmp_path / "replay")
    robot = RobotConfig(type="sim_box", name="sim0", sim_box=SimBoxConfig(image_height=32, image_width=32))
    healthy = launch_robot_actors([ActorSettings(robot=robot, store_url=url, task="box_assembly")])["sim0"]
    ray.get(healthy.info.remote())
    set_aside: dict[str, str] = {}
    records = collect(
        ReplayStore.open(url),
        {"sim0": healthy, "arm1": bad_arm},
        round_index=0,
        purpose="demo",
        seed_base=0,
        max_attempts=5,
        on_set_aside=set_aside.__setitem__,
        **collect_kwargs,
    )
    return records, set_aside


def test_a_failing_arm_is_set_aside_and_the_stage_finishes_on_the_other(local_ray, tmp_path):
    from improve.collection import CollectionError

    # Defined here, not at module level: Ray ships a local class to its workers by value (they cannot import
    # this test module).
    class ArmThatKeepsFailing:
        """An arm's actor whose serial bus fails every episode, the way a LeRobot arm reports it."""

        def run_episodes(self, purpose, round, seeds):
            from robot_io import RobotError

            raise RobotError(
                "LeRobot 'so101_follower' robot get_observation failed again after reconnecting: "
                "[TxRxResult] There is no status packet!"
            )

        def info(self):
            return {}

    broken = ray.remote(ArmThatKeepsFailing).options(num_cpus=0).remote()
    records, set_aside = collect_beside_a_healthy_arm(tmp_path, broken, target=4, max_arm_failures=2)
    assert len(records) == 4 and {r.meta.robot_id for r in records} == {"sim0"}
    assert list(set_aside) == ["arm1"]
    assert set_aside["arm1"].startswith("failed 2 times") and "no status packet" in set_aside["arm1"]
    # With no healthy arm left the stage stops, naming each arm's last error.
    with pytest.raises(
        CollectionError, match=r"every arm was set aside during demo \(arm1: .*no status packet"
    ):
        collect(
            ReplayStore.open(str(tmp_path / "replay")),
            {"arm1": broken},
            round_index=1,
            purpose="demo",
            target=1,
            seed_base=100,
            max_attempts=5,
            max_arm_failures=2,
        )


def test_a_hung_arm_is_restarted_at_its_deadline_and_set_aside(local_ray, tmp_path):
    class ArmThatHangs:
        """An arm's actor stuck inside an episode (a serial read that never returns), until Ray restarts it."""

        def run_episodes(self, purpose, round, seeds):
            time.sleep(3600)

        def info(self):
            return {}

    hanging = ray.remote(ArmThatHangs).options(num_cpus=0, max_restarts=1).remote()
    records, set_aside = collect_beside_a_healthy_arm(
        tmp_path, hanging, target=2, max_arm_failures=1, episode_deadline_s=20.0
    )
    assert len(records) == 2 and {r.meta.robot_id for r in records} == {"sim0"}
    assert list(set_aside) == ["arm1"] and "no answer within 20 s" in set_aside["arm1"]
