"""The LeRobot adapter against a LeRobot Robot (and Teleoperator) over vivarl's simulator: no arm exists here.

Every arm goes through the real path: ``make_lerobot_robot`` resolves the registered test type in LeRobot's
registry, decodes the kwargs with draccus and calls ``make_robot_from_config``; the adapter then talks to the
device only through LeRobot's Robot interface.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from robot_io import (
    LeRobotArmConfig,
    Robot,
    RobotConfig,
    RobotError,
    SafeRobot,
    SafetyConfig,
    Teleoperator,
    make_robot,
    validate_observation,
)
from robot_io.lerobot_adapter import (
    LeaderDemonstrator,
    LeRobotArm,
    LeRobotTeleop,
    make_lerobot_robot,
    make_lerobot_teleop,
)

# The size the conftest's arm_config letterboxes every frame to.
IMAGE_HEIGHT, IMAGE_WIDTH = 32, 48


def test_importing_robot_io_does_not_import_lerobot() -> None:
    code = (
        "import sys, robot_io, robot_io.lerobot_adapter\n"
        "sys.exit(any(name.startswith('lerobot') for name in sys.modules))"
    )
    repo_root = Path(__file__).parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root, check=False).returncode == 0


def test_spec_names_come_from_lerobot_features(sim_lerobot: ModuleType, arm_config) -> None:
    arm = make_lerobot_robot(arm_config())
    assert isinstance(arm, LeRobotArm) and isinstance(arm, Robot)
    assert isinstance(arm.robot, sim_lerobot.VivarlSimArm)
    joints = arm.robot.joints
    assert arm.spec.action_names == tuple(f"{joint}.pos" for joint in joints)
    assert arm.spec.state_names == arm.spec.action_names
    assert arm.spec.camera_names == ("front", "wrist")
    assert all(camera.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3) for camera in arm.spec.cameras)
    assert arm.spec.control_hz == 10.0 and arm.spec.max_action_delta is None


def test_connect_and_observe_maps_state_by_name_and_resizes_images(arm_config) -> None:
    arm = make_lerobot_robot(arm_config(reverse_motor_order=True))
    assert not arm.is_connected
    arm.connect()
    try:
        assert arm.is_connected
        measured = arm.robot.present_positions()
        # Observation features list the motors in reverse; state follows them, hold follows the actions.
        assert arm.spec.state_names == tuple(reversed(arm.spec.action_names))
        obs = arm.start_episode(seed=3)
        validate_observation(obs, arm.spec)
        expected_state = [measured[name.removesuffix(".pos")] for name in arm.spec.state_names]
        np.testing.assert_allclose(obs.state, expected_state, atol=1e-6)
        np.testing.assert_allclose(arm.hold_action(), [measured[j] for j in arm.robot.joints], atol=1e-6)
        assert set(obs.images) == {"front", "wrist"}
        assert all(image.std() > 0 for image in obs.images.values())  # rendered scenes, resized
        assert obs.timestamp > 0
    finally:
        arm.disconnect()
    assert not arm.is_connected
    with pytest.raises(RobotError, match="not connected"):
        arm.get_observation()


def test_send_action_returns_the_action_lerobot_clipped(arm_config) -> None:
    cap = 0.01
    arm = make_lerobot_robot(arm_config(max_relative_target=cap))
    arm.connect()
    try:
        present = arm.hold_action()
        request = present.copy()
        request[0] += 5 * cap
        request[1] -= 5 * cap
        sent = arm.send_action(request)
        assert sent.dtype == np.float32 and sent.shape == present.shape
        expected = present.copy()
        expected[0] += cap
        expected[1] -= cap
        np.testing.assert_allclose(sent, expected, atol=1e-5)
        assert not np.allclose(sent, request)
    finally:
        arm.disconnect()


def test_make_robot_wraps_the_arm_in_safety_that_clamps_to_configured_limits(arm_config) -> None:
    arm = make_lerobot_robot(arm_config())
    arm.connect()
    present = arm.hold_action()
    arm.disconnect()
    ceiling = arm.spec.action_high.copy()
    ceiling[0] = present[0] + 0.005  # the helper starts every connection from the same seeded scene
    safety = SafetyConfig(position_high=ceiling.tolist(), watchdog_timeout_s=0.0)
    safe = make_robot(RobotConfig(type="lerobot", lerobot=arm_config(), safety=safety))
    assert isinstance(safe, SafeRobot) and isinstance(safe.inner, LeRobotArm)
    with safe:
        safe.start_episode()
        request = safe.hold_action()
        request[0] += 0.05
        sent = safe.send_action(request)
        assert sent[0] <= ceiling[0] + 1e-6
        assert safe.stats.clamped == 1


def test_uncalibrated_robot_is_refused_with_the_calibrate_command(arm_config) -> None:
    arm = make_lerobot_robot(arm_config(calibrated=False))
    with pytest.raises(
        RobotError, match=r"lerobot-calibrate --robot.type=vivarl_sim_test .*--robot.id=sim_arm"
    ):
        arm.connect()
    assert not arm.is_connected and not arm.robot.is_calibrated


def test_unknown_robot_type_lists_known_types(arm_config) -> None:
    config = arm_config()
    config.robot_type = "no_such_arm"
    with pytest.raises(ValueError, match="known types") as excinfo:
        make_lerobot_robot(config)
    assert "so101_follower" in str(excinfo.value) and "vivarl_sim_test" in str(excinfo.value)


def test_kwargs_that_do_not_fit_the_robot_config_are_named(arm_config) -> None:
    with pytest.raises(ValueError, match="robot_kwargs do not fit VivarlSimArmConfig.*bogus"):
        make_lerobot_robot(arm_config(bogus=1))


@pytest.mark.parametrize("field_name", ["action_low", "action_high"])
def test_limits_of_the_wrong_length_or_missing_are_refused(arm_config, field_name: str) -> None:
    config = arm_config()
    setattr(config, field_name, getattr(config, field_name)[:-1])
    with pytest.raises(ValueError, match=f"lerobot.{field_name} needs"):
        make_lerobot_robot(config)
    setattr(config, field_name, [])
    with pytest.raises(ValueError, match="never driven without position limits"):
        make_lerobot_robot(config)


SO101_CAMERA = {"type": "opencv", "index_or_path": 0, "width": 640, "height": 480, "fps": 30}


def test_camera_dicts_become_lerobot_camera_configs() -> None:
    from lerobot.robots.so_follower import SO101FollowerConfig

    from robot_io.lerobot_adapter import _decode_config

    kwargs = {"port": "/dev/null", "max_relative_target": 5, "cameras": {"front": SO101_CAMERA}}
    decoded = _decode_config(SO101FollowerConfig, kwargs, "so101_follower", "robot_kwargs")
    assert type(decoded.cameras["front"]).__name__ == "OpenCVCameraConfig"
    assert decoded.cameras["front"].width == 640 and decoded.max_relative_target == 5.0


def _so101_config(tmp_path: Path) -> LeRobotArmConfig:
    kwargs = {
        "port": "/dev/null",
        "id": "so101",
        "calibration_dir": str(tmp_path),
        "cameras": {"front": SO101_CAMERA},
    }
    return LeRobotArmConfig(
        robot_kwargs=kwargs, action_low=[-90.0] * 5 + [0.0], action_high=[90.0] * 5 + [100.0]
    )


def test_so101_follower_builds_without_connecting(tmp_path: Path) -> None:
    arm = make_lerobot_robot(_so101_config(tmp_path))
    joints = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
    assert arm.spec.action_names == tuple(f"{joint}.pos" for joint in joints)
    assert arm.spec.camera_names == ("front",) and not arm.is_connected


def test_missing_motor_sdk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import scservo_sdk` fail as it does where the SDK is not installed.
    for name in [
        m for m in sys.modules if m.startswith("scservo_sdk") or m.startswith("lerobot.motors.feetech")
    ]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m.startswith("lerobot.robots.so101_follower")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scservo_sdk", None)
    with pytest.raises(ValueError, match="module 'scservo_sdk' is missing.*feetech-servo-sdk"):
        make_lerobot_robot(_so101_config(tmp_path))


def _teleop_config(tmp_path: Path, teleop_type: str, **kwargs: object) -> LeRobotArmConfig:
    return LeRobotArmConfig(
        teleop_type=teleop_type,
        teleop_kwargs={"id": "leader", "calibration_dir": str(tmp_path)},
        **kwargs,
    )


def test_no_teleop_configured_gives_none() -> None:
    assert make_lerobot_teleop(LeRobotArmConfig(teleop_type="")) is None


def test_leader_takes_over_when_grabbed_and_hands_back_when_still(
    sim_lerobot: ModuleType, tmp_path: Path
) -> None:
    now = [0.0]
    config = _teleop_config(tmp_path, sim_lerobot.LEADER_TYPE, teleop_takeover_threshold=1.0)
    built = make_lerobot_teleop(config, action_names=("z.pos", "x.pos"))
    assert isinstance(built, LeRobotTeleop) and isinstance(built, Teleoperator)
    teleop = LeRobotTeleop(built.teleop, config, ("z.pos", "x.pos"), clock=lambda: now[0])
    teleop.connect()
    leader = teleop.teleop
    assert teleop.get_action(None) is None  # the rest pose
    leader.pose["x.pos"] = 0.5  # a tremor within the threshold
    assert teleop.get_action(None) is None
    leader.pose["x.pos"], leader.pose["z.pos"] = 3.0, 2.0
    np.testing.assert_array_equal(teleop.get_action(None), [2.0, 3.0])  # in the arm's order
    now[0] += config.teleop_release_s / 2
    leader.pose["x.pos"] = 6.0  # still moving: the operator keeps control
    assert teleop.get_action(None) is not None
    now[0] += config.teleop_release_s * 0.9
    assert teleop.get_action(None) is not None
    now[0] += config.teleop_release_s * 0.2
    assert teleop.get_action(None) is None  # held still long enough: back to the policy
    teleop.set_takeover(True)
    np.testing.assert_array_equal(teleop.get_action(None), [2.0, 6.0])
    teleop.set_takeover(False)
    assert teleop.get_action(None) is None
    teleop.disconnect()


def test_the_leader_drives_every_demonstration_step_and_its_rest_pose_starts_afresh(
    sim_lerobot: ModuleType, tmp_path: Path
) -> None:
    config = _teleop_config(tmp_path, sim_lerobot.LEADER_TYPE, teleop_takeover_threshold=1.0)
    corrector = make_lerobot_teleop(config, action_names=("x.pos", "y.pos", "z.pos"))
    assert corrector is not None
    demonstrator = LeaderDemonstrator(corrector)
    assert isinstance(demonstrator, Teleoperator)
    demonstrator.connect()
    leader = corrector.teleop
    np.testing.assert_array_equal(demonstrator.get_action(None), [0.0, 0.0, 0.0])  # at rest, still driving
    leader.pose["y.pos"] = 40.0  # the demonstration moves the leader far from where it started
    np.testing.assert_array_equal(demonstrator.get_action(None), [0.0, 40.0, 0.0])
    # The rollout after it: the leader left where the demonstration ended is its new rest, not a grab.
    assert corrector.get_action(None) is None
    leader.pose["y.pos"] = 45.0
    np.testing.assert_array_equal(corrector.get_action(None), [0.0, 45.0, 0.0])
    demonstrator.disconnect()
    assert leader.is_connected  # the corrector owns the device
    corrector.disconnect()


def test_pedal_intervention_event_decides_takeover(sim_lerobot: ModuleType, tmp_path: Path) -> None:
    teleop = make_lerobot_teleop(_teleop_config(tmp_path, sim_lerobot.PEDAL_LEADER_TYPE))
    assert teleop is not None
    teleop.connect()
    teleop.teleop.pose["y.pos"] = 50.0  # leader motion alone does not count when the teleop reports events
    assert teleop.get_action(None) is None
    teleop.teleop.pedal_down = True
    np.testing.assert_array_equal(teleop.get_action(None), [0.0, 50.0, 0.0])


def test_teleop_must_produce_the_arm_actions(sim_lerobot: ModuleType, tmp_path: Path) -> None:
    config = _teleop_config(tmp_path, sim_lerobot.LEADER_TYPE)
    with pytest.raises(ValueError, match=r"arm takes \['shoulder_pan.pos'\]"):
        make_lerobot_teleop(config, action_names=("shoulder_pan.pos",))


def test_uncalibrated_leader_is_refused_with_the_calibrate_command(
    sim_lerobot: ModuleType, tmp_path: Path
) -> None:
    config = _teleop_config(tmp_path, sim_lerobot.LEADER_TYPE)
    config.teleop_kwargs["calibrated"] = False
    teleop = make_lerobot_teleop(config)
    assert teleop is not None
    with pytest.raises(
        RobotError, match="lerobot-calibrate --teleop.type=vivarl_test_leader --teleop.id=leader"
    ):
        teleop.connect()
    assert not teleop.teleop.is_connected


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.fixture
def flaky_arm(arm_config):
    """A connected arm whose backoff sleeps are recorded instead of slept, and whose device takes injected faults
    (``arm.robot.fail_reads``, ``fail_writes``, ``fail_connects``)."""
    config = arm_config()
    config.reconnect_attempts = 2
    arm = make_lerobot_robot(config)
    arm.sleeps = []
    arm._sleep = arm.sleeps.append
    arm.connect()
    arm.get_observation()
    yield arm
    arm.disconnect()


def test_a_serial_error_on_read_reconnects_and_reads_again(flaky_arm) -> None:
    device = flaky_arm.robot
    device.fail_reads, device.fail_connects = 1, 1  # one lost status packet, then one failed reconnect
    validate_observation(flaky_arm.get_observation(), flaky_arm.spec)
    assert flaky_arm.reconnects == 1 and device.connects == 2 and flaky_arm.is_connected
    # The reconnect kept the motors' torque on (the arm did not go limp), and the setting is back for a real stop.
    assert device.torque_dropped == [False] and device.config.disable_torque_on_disconnect


def test_a_failed_write_reconnects_but_is_not_sent_again(flaky_arm) -> None:
    device = flaky_arm.robot
    device.fail_writes = 1
    writes = device.writes
    with pytest.raises(RobotError, match="send_action failed.*reconnected, the episode is stopped"):
        flaky_arm.send_action(flaky_arm.hold_action())
    assert device.writes == writes + 1 and flaky_arm.reconnects == 1 and flaky_arm.is_connected
    flaky_arm.send_action(flaky_arm.hold_action())  # the next episode's first command goes out normally


def test_an_arm_that_does_not_come_back_raises_and_is_retried_at_its_next_use(flaky_arm) -> None:
    device, backoff = flaky_arm.robot, flaky_arm.config.reconnect_backoff_s
    device.fail_reads, device.fail_connects = 1, 5
    with pytest.raises(RobotError, match="get_observation failed"):
        flaky_arm.get_observation()
    assert flaky_arm.sleeps == [backoff, 2 * backoff]  # doubling backoff
    assert not flaky_arm.is_connected
    device.fail_connects = 0  # the cable is back: the next episode's first reading reconnects
    validate_observation(flaky_arm.start_episode(), flaky_arm.spec)
    assert flaky_arm.reconnects == 1
