"""The episode loop tells the policy when a corrector takes over, once per takeover, before the arm moves."""

from __future__ import annotations

import numpy as np
import pytest

from actors.episode import TeleoperatorAsPolicy, run_episode
from robot_io.spec import CameraSpec, Observation, RobotSpec


class OneDimArm:
    """A Robot with one joint that goes wherever it is commanded; it counts the actions it receives."""

    def __init__(self) -> None:
        self._spec = RobotSpec(
            cameras=(CameraSpec("front", 8, 8),),
            state_names=("q",),
            action_names=("q",),
            action_low=np.array([-10.0]),
            action_high=np.array([10.0]),
            control_hz=10.0,
        )
        self.position = np.zeros(1, dtype=np.float32)
        self.sent = 0

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return True

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def start_episode(self, seed=None) -> Observation:
        return self.get_observation()

    def get_observation(self) -> Observation:
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        return Observation(images={"front": image}, state=self.position.copy(), timestamp=0.0)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self.sent += 1
        self.position = np.asarray(action, dtype=np.float32).copy()
        return self.position.copy()

    def hold_action(self) -> np.ndarray:
        return self.position.copy()


class CorrectorOn:
    """Takes over (commanding -1) on the control steps in ``steps``."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.calls = 0

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def get_action(self, observation):
        step, self.calls = self.calls, self.calls + 1
        return np.array([-1.0], dtype=np.float32) if step in self.steps else None


class Recorder:
    """An ActionSource that logs each call with the control step it came at (the actions the arm has had)."""

    def __init__(self, arm: OneDimArm) -> None:
        self.arm = arm
        self.events: list[tuple[str, int]] = []

    def reset(self, seed=None):
        self.events.append(("reset", self.arm.sent))

    def discard_plan(self):
        self.events.append(("discard_plan", self.arm.sent))

    def act(self, observation):
        self.events.append(("act", self.arm.sent))
        return np.array([1.0], dtype=np.float32)


def test_the_plan_is_discarded_once_at_the_start_of_each_takeover():
    arm = OneDimArm()
    recorder = Recorder(arm)
    result = run_episode(arm, recorder, max_steps=9, teleop=CorrectorOn({2, 3, 4, 7}))
    assert result.intervention_steps == 4
    assert recorder.events == [
        ("reset", 0),
        ("act", 0),
        ("act", 1),
        ("discard_plan", 2),
        ("act", 5),
        ("act", 6),
        ("discard_plan", 7),
        ("act", 8),
    ]


def test_a_source_without_the_hook_fails_before_the_arm_moves():
    class NoHook:
        def reset(self, seed=None):
            pass

        def act(self, observation):
            return np.zeros(1, dtype=np.float32)

    arm = OneDimArm()
    with pytest.raises(AttributeError, match="discard_plan"):
        run_episode(arm, NoHook(), max_steps=3, teleop=CorrectorOn({1}))
    assert arm.sent == 0


def test_a_demonstrating_teleoperator_has_nothing_to_discard():
    source = TeleoperatorAsPolicy(CorrectorOn(set(range(3))))
    source.discard_plan()
    result = run_episode(OneDimArm(), source, max_steps=3)
    assert result.steps == 3 and result.intervention_steps == 0


class ReadyFromStep:
    """A source with nothing ready before step ``first`` (an asynchronous policy's first chunk), +1 after."""

    def __init__(self, first: int) -> None:
        self.first, self.calls = first, 0

    def reset(self, seed=None) -> None:
        self.calls = 0

    def discard_plan(self) -> None:
        pass

    def act(self, observation):
        self.calls += 1
        return None if self.calls <= self.first else observation.state + 1.0


def test_a_step_with_no_action_ready_holds_the_arm_and_is_counted():
    arm = OneDimArm()
    arm.position[:] = 2.0
    recorded = []
    result = run_episode(arm, ReadyFromStep(first=3), max_steps=5, on_step=recorded.append)
    # Five control steps; the three holds are commanded (the watchdog must see the arm commanded) but not recorded.
    assert result.inference_holds == 3 and result.steps == 2 == len(recorded)
    assert arm.sent == 5
    assert arm.position[0] == pytest.approx(4.0)  # held at 2 for three steps, then +1 twice
    assert [step.action[0] for step in recorded] == pytest.approx([3.0, 4.0])


def test_a_success_detector_ends_the_episode_as_a_success():
    arm = OneDimArm()
    result = run_episode(
        arm, ReadyFromStep(first=0), max_steps=50, success_detector=lambda obs: obs.state[0] >= 3.0
    )
    assert result.detected_success and result.success and result.steps == 3


class CorrectorOnRequest:
    """Drives (commanding -1) for two steps each time it is asked to take over, as the scripted corrector does."""

    def __init__(self) -> None:
        self.left = 0
        self.asked = 0

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def take_over(self) -> None:
        self.asked += 1
        self.left = 2

    def get_action(self, observation):
        if self.left == 0:
            return None
        self.left -= 1
        return np.array([-1.0], dtype=np.float32)


def test_a_help_request_the_corrector_answers_hands_it_control_on_the_control_thread():
    from actors.operator import OperatorChannel

    arm = OneDimArm()
    channel = OperatorChannel("arm", corrector_answers=True)
    corrector = CorrectorOnRequest()

    class AsksAtStep3(Recorder):
        def act(self, observation):
            if self.arm.sent == 3:
                channel.add_value(3, -0.5, help_requested=True)  # the live value's thread, here in line
            return super().act(observation)

    channel.episode_started("e", "rollout", "v1")
    result = run_episode(arm, AsksAtStep3(arm), max_steps=8, teleop=corrector, control=channel)
    assert corrector.asked == 1 and result.intervention_steps == 2
    assert channel.help_steps == [3] and not channel.takeover_requested()


def test_a_help_request_alone_does_not_take_over():
    from actors.operator import OperatorChannel

    channel = OperatorChannel("arm")
    channel.episode_started("e", "rollout", "v1")
    channel.add_value(3, -0.5, help_requested=True)
    assert channel.help_steps == [3] and not channel.takeover_requested()
    answering = OperatorChannel("arm", corrector_answers=True)
    answering.episode_started("e", "rollout", "v1")
    answering.add_value(3, -0.5, help_requested=True)
    assert answering.takeover_requested() and not answering.takeover_requested()
