"""The box-assembly scene: geometry shared by the simulator, the task evaluator and the scripted expert.

The MJCF is generated here rather than kept as a static file because every size the task and the expert reason
about (box walls, flap and lid hinges, handle fins) is derived from one ``SceneLayout``; a static XML would need
those numbers duplicated by hand.

Frames: the table top is z = 0, x points away from the viewer of the front camera, y to the left. The gripper is a
gantry: slide joints x, y, z and a yaw hinge put its tool centre point (between the fingers, 15 mm above their tips)
exactly at the joint values, so the measured end-effector pose is read straight from the joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Panel:
    """A hinged panel (flap or lid). At angle 0 it lies flat, closing the box; positive angles open it."""

    name: str
    hinge: np.ndarray  # a point on the hinge axis, world frame, at the middle of the hinge line
    closed_dir: np.ndarray  # unit vector from the hinge towards the free edge when closed
    length: float  # hinge to free edge
    fin: np.ndarray  # centre of the handle fin in the panel's closed pose (world frame)

    @property
    def axis(self) -> np.ndarray:
        """Joint axis chosen so that a positive angle lifts the free edge."""
        return np.cross(self.closed_dir, UP)

    def direction(self, angle: float) -> np.ndarray:
        """Unit vector from the hinge along the panel at ``angle``."""
        return self.closed_dir * np.cos(angle) + UP * np.sin(angle)

    def outer_normal(self, angle: float) -> np.ndarray:
        """Normal of the face that points up when the panel is closed."""
        return -self.closed_dir * np.sin(angle) + UP * np.cos(angle)

    def rotate(self, point: np.ndarray, delta: float) -> np.ndarray:
        """``point`` carried along when the panel turns by ``delta`` about its hinge."""
        a = self.axis
        v = point - self.hinge
        rotated = v * np.cos(delta) + np.cross(a, v) * np.sin(delta) + a * np.dot(a, v) * (1 - np.cos(delta))
        return self.hinge + rotated


@dataclass(frozen=True)
class SceneLayout:
    box_center: tuple[float, float] = (0.04, 0.09)
    box_inner_half: float = 0.06
    wall_thickness: float = 0.006
    wall_height: float = 0.06
    floor_thickness: float = 0.006
    panel_thickness: float = 0.004
    item_half: float = 0.02
    item_nominal: tuple[float, float] = (-0.03, -0.17)
    # Handle fins stand this far in front of the box's front wall on short tabs.
    fin_offset: float = 0.019
    fin_height: float = 0.03
    fin_half_thickness: float = 0.002
    # Half-widths of the gripper's finger boxes (along the opening direction, across it, and vertically).
    finger_half: tuple[float, float, float] = (0.006, 0.012, 0.03)
    finger_max: float = 0.04
    tcp_above_tip: float = 0.015

    @property
    def wall_mid(self) -> float:
        return self.box_inner_half + self.wall_thickness / 2

    @property
    def front_x(self) -> float:
        """Outer face of the front wall."""
        return self.box_center[0] + self.box_inner_half + self.wall_thickness

    @property
    def flap_hinge_z(self) -> float:
        return self.wall_height + self.panel_thickness / 2

    @property
    def lid_hinge_z(self) -> float:
        # The lid rests on folded flaps, so its hinge sits one panel thickness (plus a millimetre) higher.
        return self.wall_height + 1.5 * self.panel_thickness + 0.001

    @property
    def fin_x(self) -> float:
        return self.front_x + self.fin_offset

    def panels(self) -> dict[str, Panel]:
        bx, by = self.box_center
        t = self.panel_thickness
        fin_z_flap = self.flap_hinge_z + t / 2 + self.fin_height / 2
        fin_z_lid = self.lid_hinge_z + t / 2 + self.fin_height / 2
        flap_fin_r = 0.032
        return {
            "flap_left": Panel(
                "flap_left",
                np.array([bx, by - self.wall_mid, self.flap_hinge_z]),
                np.array([0.0, 1.0, 0.0]),
                self.wall_mid,
                np.array([self.fin_x, by - self.wall_mid + flap_fin_r, fin_z_flap]),
            ),
            "flap_right": Panel(
                "flap_right",
                np.array([bx, by + self.wall_mid, self.flap_hinge_z]),
                np.array([0.0, -1.0, 0.0]),
                self.wall_mid,
                np.array([self.fin_x, by + self.wall_mid - flap_fin_r, fin_z_flap]),
            ),
            "lid": Panel(
                "lid",
                np.array([bx - self.wall_mid, by, self.lid_hinge_z]),
                np.array([1.0, 0.0, 0.0]),
                2 * self.wall_mid,
                np.array([self.fin_x, by, fin_z_lid]),
            ),
        }


def _vec(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def _look_at(eye: np.ndarray, target: np.ndarray) -> str:
    """MJCF ``xyaxes`` for a camera at ``eye`` looking at ``target`` with the world z axis up in the image."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, UP)
    if np.linalg.norm(right) < 1e-6:
        right = np.array([0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return _vec(np.concatenate([right, up]))


def _panel_body(layout: SceneLayout, panel: Panel, is_lid: bool) -> str:
    """A panel body whose frame sits on its hinge; geoms are placed for the closed pose (joint value 0)."""
    t = layout.panel_thickness
    d = panel.closed_dir
    across = np.cross(UP, d)  # along the hinge line
    # Flaps stop short of the front and back walls' centre lines so that, standing open, they clear the lid.
    half_span = layout.wall_mid + layout.wall_thickness / 2 if is_lid else layout.wall_mid - 0.011
    plate = d * panel.length / 2
    plate_size = np.abs(d) * panel.length / 2 + np.abs(across) * half_span + UP * t / 2
    fin_local = panel.fin - panel.hinge
    # Tabs run from inside the plate's edge to just past the fin, in the panel's closing direction (lid) or along
    # its hinge (flaps), and carry the handle fin in front of the front wall.
    if is_lid:
        tab_start, tab_end = panel.length - 0.003, fin_local[0] + 0.012
        tab_centre = np.array([(tab_start + tab_end) / 2, 0.0, 0.0])
        tab_size = ((tab_end - tab_start) / 2, 0.016, t / 2)
        fin_size = (0.010, layout.fin_half_thickness, layout.fin_height / 2)
    else:
        tab_start, tab_end = half_span - 0.003, fin_local[0] + 0.012
        tab_centre = np.array([(tab_start + tab_end) / 2, fin_local[1], 0.0])
        tab_size = ((tab_end - tab_start) / 2, 0.011, t / 2)
        fin_size = (layout.fin_half_thickness, 0.011, layout.fin_height / 2)
    return f"""
      <body name="{panel.name}" gravcomp="1" pos="{_vec(panel.hinge - [*layout.box_center, 0.0])}">
        <joint name="{panel.name}_hinge" type="hinge" axis="{_vec(panel.axis)}" range="0 {115 if is_lid else 100}"
               damping="0.02" frictionloss="0.03" armature="0.0005" limited="true"/>
        <geom name="{panel.name}" type="box" pos="{_vec(plate)}" size="{_vec(plate_size)}" material="card"
              mass="{0.03 if is_lid else 0.015}"/>
        <geom name="{panel.name}_tab" type="box" pos="{_vec(tab_centre)}" size="{_vec(tab_size)}" material="card"
              mass="0.002"/>
        <geom name="{panel.name}_fin" type="box" pos="{_vec(fin_local)}" size="{_vec(fin_size)}" material="fin"
              mass="0.002"/>
      </body>"""


CAMERA_NAMES = ("front", "top", "wrist")


def build_scene_xml(
    layout: SceneLayout, render_width: int, render_height: int, render_samples: int = 0
) -> str:
    """The MJCF of the whole scene. ``render_*`` size the offscreen framebuffer so any camera size fits;
    ``render_samples`` is its multisample anti-aliasing (0: none)."""
    bx, by = layout.box_center
    h, w, f, inner = layout.wall_height, layout.wall_thickness, layout.floor_thickness, layout.box_inner_half
    fx, fy, fz = layout.finger_half
    panels = layout.panels()
    walls = []
    for name, pos, size in (
        ("wall_front", (inner + w / 2, 0, h / 2), (w / 2, inner + w, h / 2)),
        ("wall_back", (-inner - w / 2, 0, h / 2), (w / 2, inner + w, h / 2)),
        ("wall_left", (0, -inner - w / 2, h / 2), (inner, w / 2, h / 2)),
        ("wall_right", (0, inner + w / 2, h / 2), (inner, w / 2, h / 2)),
        ("box_floor", (0, 0, f / 2), (inner, inner, f / 2)),
    ):
        walls.append(
            f'<geom name="{name}" type="box" pos="{_vec(pos)}" size="{_vec(size)}" material="card"/>'
        )
    target = np.array([bx - 0.02, by - 0.06, 0.04])
    front_eye = np.array([0.40, -0.07, 0.32])
    top_eye = np.array([bx + 0.05, by - 0.07, 0.75])
    wrist_eye = np.array([0.0, -0.075, 0.075])
    return f"""
<mujoco model="vivarl_box_assembly">
  <compiler angle="degree" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" gravity="0 0 -9.81"/>
  <visual>
    <global offwidth="{max(render_width, 640)}" offheight="{max(render_height, 480)}"/>
    <quality shadowsize="0" offsamples="{render_samples}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <geom friction="1.0 0.01 0.001" solref="0.004 1"/>
  </default>
  <asset>
    <material name="table" rgba="0.55 0.45 0.35 1"/>
    <material name="card" rgba="0.78 0.62 0.40 1"/>
    <material name="fin" rgba="0.35 0.25 0.15 1"/>
    <material name="item" rgba="0.85 0.15 0.15 1"/>
    <material name="gripper" rgba="0.25 0.3 0.4 1"/>
    <material name="finger" rgba="0.15 0.55 0.75 1"/>
  </asset>
  <worldbody>
    <light name="sun" pos="0 0 1.5" dir="0 0 -1" directional="true" castshadow="false" diffuse="0.4 0.4 0.4"/>
    <geom name="table" type="box" pos="0 0 -0.02" size="0.5 0.5 0.02" material="table"/>
    <camera name="front" pos="{_vec(front_eye)}" xyaxes="{_look_at(front_eye, target)}" fovy="55"/>
    <camera name="top" pos="{_vec(top_eye)}" xyaxes="{_look_at(top_eye, target)}" fovy="45"/>
    <body name="box" pos="{bx} {by} 0">
      {"".join(walls)}
      {_panel_body(layout, panels["flap_left"], False)}
      {_panel_body(layout, panels["flap_right"], False)}
      {_panel_body(layout, panels["lid"], True)}
    </body>
    <body name="item" pos="{layout.item_nominal[0]} {layout.item_nominal[1]} {layout.item_half}">
      <freejoint name="item_free"/>
      <geom name="item" type="box" size="{_vec([layout.item_half] * 3)}" material="item" mass="0.05"
            condim="4"/>
    </body>
    <body name="hand" gravcomp="1">
      <joint name="ee_x" type="slide" axis="1 0 0" range="-0.3 0.3" damping="80"/>
      <joint name="ee_y" type="slide" axis="0 1 0" range="-0.3 0.3" damping="80"/>
      <joint name="ee_z" type="slide" axis="0 0 1" range="0 0.4" damping="80"/>
      <joint name="ee_yaw" type="hinge" axis="0 0 1" range="-110 110" damping="2" armature="0.01"/>
      <geom name="palm" type="box" pos="0 0 {fz * 2 - layout.tcp_above_tip + 0.012}" size="0.05 0.015 0.012"
            material="gripper" mass="0.3"/>
      <camera name="wrist" pos="{_vec(wrist_eye)}" xyaxes="{_look_at(wrist_eye, np.array([0, 0.04, -0.05]))}"
              fovy="75"/>
      <body name="finger_left" pos="{-fx} 0 {fz - layout.tcp_above_tip}" gravcomp="1">
        <joint name="finger_left" type="slide" axis="-1 0 0" range="0 {layout.finger_max}" damping="4"/>
        <geom name="finger_left" type="box" size="{fx} {fy} {fz}" material="finger" mass="0.05" condim="4"/>
      </body>
      <body name="finger_right" pos="{fx} 0 {fz - layout.tcp_above_tip}" gravcomp="1">
        <joint name="finger_right" type="slide" axis="1 0 0" range="0 {layout.finger_max}" damping="4"/>
        <geom name="finger_right" type="box" size="{fx} {fy} {fz}" material="finger" mass="0.05" condim="4"/>
      </body>
    </body>
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
  </contact>
  <equality>
    <joint name="finger_mirror" joint1="finger_right" joint2="finger_left" polycoef="0 1 0 0 0"/>
    <weld name="grasp_item" body1="hand" body2="item" active="false" solref="0.01 1"/>
    <connect name="grasp_flap_left" body1="hand" body2="flap_left" anchor="0 0 0" active="false"/>
    <connect name="grasp_flap_right" body1="hand" body2="flap_right" anchor="0 0 0" active="false"/>
    <connect name="grasp_lid" body1="hand" body2="lid" anchor="0 0 0" active="false"/>
  </equality>
  <actuator>
    <position name="ee_x" joint="ee_x" kp="3000" forcerange="-80 80"/>
    <position name="ee_y" joint="ee_y" kp="3000" forcerange="-80 80"/>
    <position name="ee_z" joint="ee_z" kp="3000" forcerange="-80 80"/>
    <position name="ee_yaw" joint="ee_yaw" kp="30" forcerange="-5 5"/>
    <position name="gripper" joint="finger_left" kp="300" forcerange="-12 12"/>
  </actuator>
</mujoco>
"""
