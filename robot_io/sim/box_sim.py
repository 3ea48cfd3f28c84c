"""``BoxAssemblySim``: the MuJoCo box-assembly arm behind the ``Robot`` protocol.

Action (absolute targets): ``[ee_x, ee_y, ee_z, ee_yaw, gripper_opening]`` in metres and radians; the end effector
is the tool centre point between the fingers. The simulated controller clips every target to the spec's limits and
to ``max_action_delta`` from the previous target (it is the "hardware"), then ramps the servo set-points linearly
over the control period, so motion is smooth and contacts are resolved by physics, never by teleporting.

Grasping switches on an equality constraint (a weld for the item, a point connection for a flap or lid handle) when
both fingers touch the same graspable body while the gripper is commanded closed, and off again when it is commanded
open. That is the accepted simplification of friction grasping; panels are otherwise only pushed.

Episode end: ``episode_done`` is true on success or once ``max_steps`` control steps have run (``info["done"]``
says the same). The simulator keeps stepping if asked; the time-out is the caller's to honour.
"""

from __future__ import annotations

import weakref

import numpy as np

from robot_io.config import SimBoxConfig
from robot_io.robot import hold_if_nonfinite
from robot_io.sim import _gl
from robot_io.sim.scene import CAMERA_NAMES, SceneLayout, build_scene_xml
from robot_io.sim.task import STAGES, SimReading, TaskState, evaluate, item_over_box
from robot_io.spec import CameraSpec, Observation, RobotError, RobotSpec, as_action

_gl.choose_gl_backend()
import mujoco  # noqa: E402 - the GL backend must be chosen before mujoco is imported

from robot_io.sim.cameras import CameraStrip  # noqa: E402

ACTION_NAMES = ("ee_x", "ee_y", "ee_z", "ee_yaw", "gripper_opening")
STATE_NAMES = (
    "ee_x",
    "ee_y",
    "ee_z",
    "ee_yaw",
    "gripper_opening",
    "ee_vx",
    "ee_vy",
    "ee_vz",
    "gripper_velocity",
)
ACTION_LOW = np.array([-0.25, -0.25, 0.018, -1.75, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([0.25, 0.25, 0.30, 1.75, 0.08], dtype=np.float32)
MAX_ACTION_DELTA = np.array([0.04, 0.04, 0.04, 0.4, 0.04], dtype=np.float32)
PANELS = ("flap_left", "flap_right", "lid")
HAND_JOINTS = ("ee_x", "ee_y", "ee_z", "ee_yaw")


class BoxAssemblySim:
    """A simulated gantry gripper, a box with two flaps and a lid, and one item to pack. A ``Robot``."""

    def __init__(self, config: SimBoxConfig | None = None, layout: SceneLayout | None = None) -> None:
        self.config = config or SimBoxConfig()
        self.layout = layout or SceneLayout()
        unknown = [c for c in self.config.cameras if c not in CAMERA_NAMES]
        if unknown or not self.config.cameras:
            raise ValueError(
                f"sim_box.cameras must name some of {list(CAMERA_NAMES)}, got {self.config.cameras}"
            )
        h, w = self.config.image_height, self.config.image_width
        # One framebuffer strip holds every camera side by side (robot_io.sim.cameras).
        strip_width = w * len(self.config.cameras)
        if self.config.render_samples < 0:
            raise ValueError(
                f"sim_box.render_samples is {self.config.render_samples}: give 0 (no anti-aliasing) or more samples"
            )
        self.model = mujoco.MjModel.from_xml_string(
            build_scene_xml(self.layout, strip_width, h, self.config.render_samples)
        )
        self.data = mujoco.MjData(self.model)
        self._substeps = max(1, round(1.0 / (self.config.control_hz * self.model.opt.timestep)))
        self._spec = RobotSpec(
            cameras=tuple(CameraSpec(name, h, w) for name in self.config.cameras),
            state_names=STATE_NAMES,
            action_names=ACTION_NAMES,
            action_low=ACTION_LOW,
            action_high=ACTION_HIGH,
            control_hz=self.config.control_hz,
            max_action_delta=MAX_ACTION_DELTA,
        )
        self._qadr = {
            j: int(self.model.jnt_qposadr[self.model.joint(j).id]) for j in (*HAND_JOINTS, "finger_left")
        }
        self._vadr = {
            j: int(self.model.jnt_dofadr[self.model.joint(j).id]) for j in (*HAND_JOINTS, "finger_left")
        }
        self._panel_qadr = {p: int(self.model.jnt_qposadr[self.model.joint(f"{p}_hinge").id]) for p in PANELS}
        self._item_qadr = int(self.model.jnt_qposadr[self.model.joint("item_free").id])
        self._body = {n: self.model.body(n).id for n in ("hand", "item", *PANELS)}
        self._eq = {n: self.model.equality(f"grasp_{n}").id for n in ("item", *PANELS)}
        geom = self.model.geom
        self._hand_geoms = {geom(n).id for n in ("palm", "finger_left", "finger_right")}
        self._fingers = (geom("finger_left").id, geom("finger_right").id)
        # Only the item and the panels' handle fins can be grasped; the panels themselves are pushed.
        self._graspable = {geom("item").id: "item", **{geom(f"{p}_fin").id: p for p in PANELS}}
        self._scene_geoms = {
            i
            for i in range(self.model.ngeom)
            if self.model.geom_bodyid[i] in {self._body[n] for n in self._eq}
        } | {geom(n).id for n in ("wall_front", "wall_back", "wall_left", "wall_right", "box_floor")}
        self._cameras: CameraStrip | None = None
        self._connected = False
        self._command = np.zeros(len(ACTION_NAMES), dtype=np.float32)
        self._grasped: str | None = None
        self._released_steps = 0
        self._item_was_lifted = False
        self._task: TaskState | None = None
        self._obs_cache: tuple[tuple[int, int], Observation] | None = None
        self.episode_index = -1
        self.episode_seed = 0
        self.step_count = 0

    # -- Robot protocol -------------------------------------------------------------------------------------
    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._cameras is None:
            self._cameras = CameraStrip(
                self.model, self.config.cameras, self.config.image_height, self.config.image_width
            )
            # Close the GL context before interpreter shutdown tears down EGL under it (which prints errors).
            self._cameras_finalizer = weakref.finalize(self, self._cameras.close)
        self._connected = True

    def disconnect(self) -> None:
        if self._cameras is not None:
            self._cameras_finalizer()
            self._cameras = None
        self._connected = False

    def start_episode(self, seed: int | None = None) -> Observation:
        self._require_connected()
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.episode_seed = int(seed)
        self.episode_index += 1
        rng = np.random.default_rng(self.episode_seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        noise = self.config.item_position_noise
        item_xy = np.asarray(self.layout.item_nominal) + rng.uniform(-noise, noise, 2)
        item_yaw = rng.uniform(-0.3, 0.3)
        d.qpos[self._item_qadr : self._item_qadr + 7] = [
            *item_xy,
            self.layout.item_half,
            np.cos(item_yaw / 2),
            0.0,
            0.0,
            np.sin(item_yaw / 2),
        ]
        for panel, (lo, hi) in zip(PANELS, ((60, 80), (60, 80), (87, 100)), strict=True):
            d.qpos[self._panel_qadr[panel]] = np.radians(rng.uniform(lo, hi))
        start = np.array([0.0, -0.06, 0.20]) + rng.uniform(-0.02, 0.02, 3)
        self._command = np.array([*start, 0.0, ACTION_HIGH[4]], dtype=np.float32)
        self._write_targets(self._command)
        for joint, value in zip(HAND_JOINTS, self._command[:4], strict=True):
            d.qpos[self._qadr[joint]] = value
        d.qpos[self._qadr["finger_left"]] = d.qpos[self._qadr["finger_left"] + 1] = self._command[4] / 2
        mujoco.mj_forward(m, d)
        self._grasped = None
        self._released_steps = 0
        self._item_was_lifted = False
        self.step_count = 0
        self._obs_cache = None
        self._update_task()
        return self.get_observation()

    def get_observation(self, render: bool = True) -> Observation:
        """The current reading; ``render=False`` skips the cameras (``images`` is then empty), for fast tests."""
        self._require_connected()
        if not render:
            return Observation(
                images={}, state=self._state(), timestamp=float(self.data.time), info=self.info()
            )
        key = (self.episode_index, self.step_count)
        if self._obs_cache is not None and self._obs_cache[0] == key:
            return self._obs_cache[1]
        images = self._cameras.render(self.data)
        obs = Observation(
            images=images, state=self._state(), timestamp=float(self.data.time), info=self.info()
        )
        self._obs_cache = (key, obs)
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_connected()
        if self._task is None:
            raise RobotError("no episode is running: call start_episode() before send_action()")
        requested, _ = hold_if_nonfinite(as_action(action, self._spec), self.hold_action())
        applied = np.clip(requested, ACTION_LOW, ACTION_HIGH)
        applied = np.clip(applied, self._command - MAX_ACTION_DELTA, self._command + MAX_ACTION_DELTA)
        applied = np.clip(applied, ACTION_LOW, ACTION_HIGH).astype(np.float32)
        if self._grasped is not None and applied[4] > self._opening() + 0.004:
            self.data.eq_active[self._eq[self._grasped]] = 0
            self._grasped = None
        previous = self._command
        for k in range(self._substeps):
            self._write_targets(previous + (applied - previous) * (k + 1) / self._substeps)
            mujoco.mj_step(self.model, self.data)
        self._command = applied
        self.step_count += 1
        self._maybe_grasp()
        self._update_task()
        return applied.copy()

    def hold_action(self) -> np.ndarray:
        q = self.data.qpos
        pose = [q[self._qadr[j]] for j in HAND_JOINTS]
        return np.clip(np.array([*pose, self._opening()], dtype=np.float32), ACTION_LOW, ACTION_HIGH)

    # -- episode status and privileged access (for the scripted expert and tests) --------------------------
    @property
    def task(self) -> TaskState:
        if self._task is None:
            raise RobotError("no episode is running: call start_episode() first")
        return self._task

    @property
    def last_command(self) -> np.ndarray:
        """The target the controller is servoing to (the last applied action)."""
        return self._command.copy()

    @property
    def grasped(self) -> str | None:
        """What the gripper holds: "item", a panel name, or None."""
        return self._grasped

    @property
    def timed_out(self) -> bool:
        return self.step_count >= self.config.max_steps

    @property
    def episode_done(self) -> bool:
        """True once the task succeeded or the time limit (``max_steps`` control steps) was reached."""
        return self._task is not None and (self._task.success or self.timed_out)

    done = episode_done

    @property
    def dropped(self) -> bool:
        """The item was lifted once and now lies outside the box on (or off) the table: a failed episode."""
        item = self.data.xpos[self._body["item"]]
        resting_low = item[2] < self.layout.item_half + 0.006
        return (
            self._item_was_lifted
            and self._grasped != "item"
            and ((resting_low and not item_over_box(self.layout, item)) or item[2] < -0.05)
        )

    def info(self) -> dict[str, float]:
        """Ground truth recorded with every observation (all floats; flags are 1.0 or 0.0).

        progress in [0, 1]; stage (index of the first stage not holding, 4 once all hold) and num_stages; success;
        failed (dropped, or timed out without success); dropped; timed_out; done (success or time limit);
        item_grasped; item_in_box; flap_left_angle, flap_right_angle, lid_angle (radians, 0 = closed); step.
        """
        task = self.task
        failed = self.dropped or (self.timed_out and not task.success)
        angles = task.reading.panel_angles
        return {
            "progress": task.progress,
            "stage": float(task.stage),
            "num_stages": float(len(STAGES)),
            "success": float(task.success),
            "failed": float(failed),
            "dropped": float(self.dropped),
            "timed_out": float(self.timed_out and not task.success),
            "done": float(self.episode_done),
            "item_grasped": float(self._grasped == "item"),
            "item_in_box": float(task.item_in_box),
            "flap_left_angle": float(angles["flap_left"]),
            "flap_right_angle": float(angles["flap_right"]),
            "lid_angle": float(angles["lid"]),
            "step": float(self.step_count),
        }

    def panel_angle(self, panel: str) -> float:
        return float(self.data.qpos[self._panel_qadr[panel]])

    def item_pose(self) -> tuple[np.ndarray, float]:
        """Item centre and yaw (radians) in the world frame."""
        qw, _, _, qz = self.data.qpos[self._item_qadr + 3 : self._item_qadr + 7]
        return self.data.xpos[self._body["item"]].copy(), float(2 * np.arctan2(qz, qw))

    # -- internals ------------------------------------------------------------------------------------------
    def _require_connected(self) -> None:
        if not self._connected:
            raise RobotError("simulator is not connected: call connect() first")

    def _write_targets(self, target: np.ndarray) -> None:
        self.data.ctrl[:4] = target[:4]
        self.data.ctrl[4] = target[4] / 2

    def _opening(self) -> float:
        return float(2 * self.data.qpos[self._qadr["finger_left"]])

    def _state(self) -> np.ndarray:
        q, v = self.data.qpos, self.data.qvel
        pose = [q[self._qadr[j]] for j in HAND_JOINTS]
        vel = [v[self._vadr[j]] for j in ("ee_x", "ee_y", "ee_z")]
        return np.array([*pose, self._opening(), *vel, 2 * v[self._vadr["finger_left"]]], dtype=np.float32)

    def _contacts(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in self.data.contact.geom[: self.data.ncon]]

    def _maybe_grasp(self) -> None:
        if self._grasped is not None or self._command[4] > self._opening() - 0.003:
            return
        touched: dict[int, set[str]] = {f: set() for f in self._fingers}
        for a, b in self._contacts():
            for finger, other in ((a, b), (b, a)):
                if finger in touched and other in self._graspable:
                    touched[finger].add(self._graspable[other])
        common = touched[self._fingers[0]] & touched[self._fingers[1]]
        if not common:
            return
        target = sorted(common)[0]
        self._attach(target)

    def _attach(self, target: str) -> None:
        """Switch on the grasp constraint so that it holds the current relative pose (no jump)."""
        m, d = self.model, self.data
        hand, body, eq = self._body["hand"], self._body[target], self._eq[target]
        hand_pos, hand_mat = d.xpos[hand], d.xmat[hand].reshape(3, 3)
        body_pos, body_mat = d.xpos[body], d.xmat[body].reshape(3, 3)
        if target == "item":
            rel_pos = hand_mat.T @ (body_pos - hand_pos)
            rel_quat = np.zeros(4)
            mujoco.mju_mat2Quat(rel_quat, (hand_mat.T @ body_mat).ravel())
            m.eq_data[eq, 0:3] = 0.0
            m.eq_data[eq, 3:6] = rel_pos
            m.eq_data[eq, 6:10] = rel_quat
            m.eq_data[eq, 10] = 1.0
        else:
            # The connection point is the tool centre point (the hand's origin) expressed in the panel's frame.
            m.eq_data[eq, 0:3] = 0.0
            m.eq_data[eq, 3:6] = body_mat.T @ (hand_pos - body_pos)
        d.eq_active[eq] = 1
        self._grasped = target

    def _update_task(self) -> None:
        touching = any(
            (a in self._hand_geoms and b in self._scene_geoms)
            or (b in self._hand_geoms and a in self._scene_geoms)
            for a, b in self._contacts()
        )
        self._released_steps = 0 if touching or self._grasped else self._released_steps + 1
        item = self.data.xpos[self._body["item"]].copy()
        if self._grasped == "item" and item[2] > self.layout.item_half + 0.02:
            self._item_was_lifted = True
        reading = SimReading(
            tcp=self.data.xpos[self._body["hand"]].copy(),
            item_pos=item,
            item_grasped=self._grasped == "item",
            panel_angles={p: self.panel_angle(p) for p in PANELS},
            hand_touches_scene=touching,
            released_steps=self._released_steps,
        )
        self._task = evaluate(self.layout, reading, self.config.success_hold_steps)
