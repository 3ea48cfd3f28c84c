"""Fixtures of the actor tests: an arm's actor run on its own thread, as Ray runs it (the simulator's GL context
belongs to the thread that made it), while the test plays the operator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from actors.console import ConsoleConfig
from actors.robot_actor import ActorSettings, RobotWorker
from robot_io import RobotConfig


@dataclass
class ArmOnThread:
    thread: threading.Thread
    worker: RobotWorker
    # The summaries run_episodes returned, and anything the actor's thread raised.
    done: list[dict] = field(default_factory=list)
    failed: list[BaseException] = field(default_factory=list)

    @property
    def console_base(self) -> str:
        return self.worker.info()["console_url"].split("/?")[0]

    def join(self, timeout_s: float = 60.0) -> None:
        self.thread.join(timeout=timeout_s)
        assert not self.thread.is_alive(), "the arm's episodes did not finish"
        assert not self.failed, self.failed


StartArm = Callable[..., ArmOnThread]


@pytest.fixture
def operator_settings(tmp_path) -> Callable[..., ActorSettings]:
    """``operator_settings(robot, token, outcome_timeout_s=60)``: an arm whose outcomes an operator gives on its
    console (any free port on loopback, this token), with its store in the test's folder."""

    def settings(robot: RobotConfig, token: str, outcome_timeout_s: float = 60.0) -> ActorSettings:
        return ActorSettings(
            robot=robot,
            store_url=str(tmp_path / "replay"),
            task="box_assembly",
            outcome_source="operator",
            outcome_timeout_s=outcome_timeout_s,
            console=ConsoleConfig(port=0, token=token),
        )

    return settings


@pytest.fixture
def start_arm() -> Iterator[StartArm]:
    """``start_arm(settings, purpose, seeds, prepare=None)``: build the arm's worker on a new thread, call
    ``prepare(worker)`` there, then run the episodes; returns once the worker exists (its console is up)."""
    threads: list[threading.Thread] = []

    def start(
        settings: ActorSettings,
        purpose: str,
        seeds: list[int],
        prepare: Callable[[RobotWorker], None] | None = None,
    ) -> ArmOnThread:
        built, holder, failed, done = threading.Event(), [], [], []

        def actor() -> None:
            try:
                worker = RobotWorker(settings)
                holder.append(worker)
                if prepare is not None:
                    prepare(worker)
                built.set()
                try:
                    done.extend(worker.run_episodes(purpose, 0, seeds))
                finally:
                    worker.close()
            except BaseException as exc:  # noqa: BLE001 - reported by ArmOnThread.join and below
                failed.append(exc)
                built.set()

        thread = threading.Thread(target=actor, daemon=True)
        threads.append(thread)
        thread.start()
        assert built.wait(60.0) and not failed, failed
        return ArmOnThread(thread, holder[0], done, failed)

    yield start
    for thread in threads:
        thread.join(timeout=60.0)
