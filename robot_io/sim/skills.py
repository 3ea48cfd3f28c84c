"""Waypoint plans for the scripted expert, each built from the simulator's current state.

A plan is a list of ``Waypoint`` targets in action space. Every plan starts from wherever the gripper is now, so
the expert can re-plan at any moment (after a policy's mistake, or after its own retry or slip). Moves between
distant points go over the box at a transit height whenever a straight line would sweep through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_io.sim.box_sim import ACTION_HIGH, BoxAssemblySim
from robot_io.sim.scene import Panel
from robot_io.sim.task import CARRY_HEIGHT

OPEN = float(ACTION_HIGH[4])
CLOSED = 0.0
# Flaps are pushed with the fingers across the hinge; the lid with the hand turned so the palm runs along its hinge.
PUSH_YAW = {"flap_left": 0.0, "flap_right": 0.0, "lid": np.pi / 2}
PUSH_RADIUS = {"flap_left": 0.045, "flap_right": 0.045, "lid": 0.09}
# The lid is pushed off its centre line, where the handle fin would otherwise meet the palm.
PUSH_STATION = {"flap_left": 0.0, "flap_right": 0.0, "lid": 0.057}
# Fingers open just wide enough around a handle fin not to touch the neighbouring fins.
FIN_OPENING = {"flap_left": 0.02, "flap_right": 0.02, "lid": 0.014}
ARC_STEP = np.radians(8.0)


@dataclass
class Waypoint:
    target: np.ndarray  # [x, y, z, yaw, gripper_opening]
    speed: float = 0.03  # largest change of the commanded position per control step (metres)
    wait: int = 0  # control steps to hold once reached (for the gripper to close or open)
    requires: str | None = None  # what must be held while executing this waypoint; the plan is void otherwise
    # Letting go and backing off are finished even when the goal changes meanwhile (say, a stage just completed).
    finish: bool = False
    label: str = ""


def _wp(xyz, yaw: float, grip: float, **kw) -> Waypoint:
    return Waypoint(np.array([*xyz, yaw, grip], dtype=np.float64), **kw)


def _sweeps_box(sim: BoxAssemblySim, start: np.ndarray, end: np.ndarray) -> bool:
    """Whether the straight move sweeps the gripper (palm half-length 5 cm) through the box and its panels."""
    lay = sim.layout
    bx, by = lay.box_center
    margin = 0.06
    half = lay.box_inner_half + lay.wall_thickness
    x_lo, x_hi = bx - half - 0.035 - margin, lay.fin_x + margin
    y_lo, y_hi = by - half - margin, by + half + margin
    top = 0.235
    for s in np.linspace(0.0, 1.0, 24):
        p = start + (end - start) * s
        if x_lo < p[0] < x_hi and y_lo < p[1] < y_hi and p[2] < top:
            return True
    return False


def transit(
    sim: BoxAssemblySim, start: np.ndarray, xyz, yaw: float, grip: float, label: str
) -> list[Waypoint]:
    """Waypoints from ``start`` (a commanded action) to ``xyz``, going over the box if a direct move would not."""
    end = np.asarray(xyz, dtype=np.float64)
    if not _sweeps_box(sim, start[:3], end):
        return [_wp(end, yaw, grip, label=label)]
    up = max(CARRY_HEIGHT, float(start[2]))
    return [
        _wp([start[0], start[1], up], start[3], grip, label=f"{label}:up"),
        _wp([end[0], end[1], up], yaw, grip, label=f"{label}:over"),
        _wp(end, yaw, grip, speed=0.025, label=label),
    ]


def grasp_yaw(item_yaw: float) -> float:
    """The cube is symmetric under quarter turns: grasp at the equivalent yaw nearest zero."""
    return float((item_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def pick_item(sim: BoxAssemblySim, start: np.ndarray) -> list[Waypoint]:
    pos, yaw = sim.item_pose()
    yaw = grasp_yaw(yaw)
    above = [pos[0], pos[1], pos[2] + 0.08]
    return [
        *transit(sim, start, above, yaw, OPEN, "pick:approach"),
        _wp([pos[0], pos[1], pos[2]], yaw, OPEN, speed=0.02, label="pick:descend"),
        _wp([pos[0], pos[1], pos[2]], yaw, CLOSED, wait=2, label="pick:close"),
        _wp([pos[0], pos[1], CARRY_HEIGHT], yaw, CLOSED, requires="item", label="pick:lift"),
    ]


def carry_and_place(sim: BoxAssemblySim, start: np.ndarray, drop_at: float | None = None) -> list[Waypoint]:
    """From holding the item: up to carry height, over the box, down, let go, and back up out of the box.

    ``drop_at`` (a fraction of the move across) opens the gripper on the way, outside the box: a slip.
    """
    lay = sim.layout
    bx, by = lay.box_center
    yaw = float(start[3])
    lift = [start[0], start[1], CARRY_HEIGHT]
    over = np.array([bx, by, CARRY_HEIGHT])
    plan = [_wp(lift, yaw, CLOSED, requires="item", label="place:lift")]
    if drop_at is not None:
        slip = np.asarray(lift) + (over - np.asarray(lift)) * drop_at
        plan += [
            _wp(slip, yaw, CLOSED, requires="item", label="place:carry"),
            _wp(slip, yaw, OPEN, wait=1, label="place:slip"),
        ]
        return plan
    release_z = lay.floor_thickness + lay.item_half + 0.008
    # Square the item up with the box on the way, so it slides in between the open flaps.
    return plan + [
        _wp(over, 0.0, CLOSED, requires="item", label="place:carry"),
        _wp([bx, by, release_z], 0.0, CLOSED, speed=0.025, requires="item", label="place:lower"),
        _wp([bx, by, release_z], 0.0, OPEN, wait=1, finish=True, label="place:release"),
        _wp([bx, by, lay.wall_height + 0.07], 0.0, OPEN, finish=True, label="place:withdraw"),
    ]


def set_item_down(sim: BoxAssemblySim, start: np.ndarray) -> list[Waypoint]:
    """Put the held item back on the table at its nominal place (to free the hand for opening the box)."""
    x, y = sim.layout.item_nominal
    z = sim.layout.item_half + 0.004
    yaw = float(start[3])
    return [
        _wp([start[0], start[1], CARRY_HEIGHT], yaw, CLOSED, requires="item", label="set_down:lift"),
        *transit(
            sim, np.array([start[0], start[1], CARRY_HEIGHT, yaw, CLOSED]), [x, y, z], yaw, CLOSED, "set_down"
        ),
        _wp([x, y, z], yaw, OPEN, wait=1, finish=True, label="set_down:release"),
        _wp([x, y, z + 0.08], yaw, OPEN, finish=True, label="set_down:withdraw"),
    ]


def _push_point(
    panel: Panel, station: np.ndarray, radius: float, angle: float, clearance: float
) -> np.ndarray:
    return panel.hinge + station + radius * panel.direction(angle) + clearance * panel.outer_normal(angle)


def fold_panel(sim: BoxAssemblySim, start: np.ndarray, name: str) -> list[Waypoint]:
    """Push a flap or the lid shut along an arc about its hinge, pressing on its outer face."""
    panel = sim.layout.panels()[name]
    yaw, radius = PUSH_YAW[name], PUSH_RADIUS[name]
    station = np.abs(panel.axis) * PUSH_STATION[name]
    angle = sim.panel_angle(name)
    approach = _push_point(panel, station, radius, angle + np.radians(10), 0.03)
    plan = transit(sim, start, approach, yaw, CLOSED, f"fold_{name}:approach")
    # Pressing a few millimetres into the face keeps contact while the arc is followed; the finger is 12 mm thick
    # across the face and 15 mm below the tool centre point, which sets the clearance at the two ends of the arc.
    for phi in [*np.arange(angle + np.radians(3), np.radians(-2.5), -ARC_STEP), np.radians(-3.0)]:
        clearance = 0.010 + 0.005 * np.cos(phi)
        point = _push_point(panel, station, radius, phi, clearance)
        plan.append(_wp(point, yaw, CLOSED, speed=0.02, label=f"fold_{name}:push"))
    final = plan[-1].target[:3] + np.array([0.0, 0.0, 0.05])
    plan.append(_wp(final, yaw, CLOSED, finish=True, label=f"fold_{name}:withdraw"))
    return plan


def open_panel(sim: BoxAssemblySim, start: np.ndarray, name: str, target_angle: float) -> list[Waypoint]:
    """Grasp a panel's handle fin and swing it open to ``target_angle`` along the hinge's arc, then let go."""
    panel = sim.layout.panels()[name]
    angle = sim.panel_angle(name)
    yaw, opening = PUSH_YAW[name], FIN_OPENING[name]
    grip_closed = panel.fin + np.array([0.0, 0.0, 0.01])
    grip_now = panel.rotate(grip_closed, angle)
    plan = [
        *transit(sim, start, grip_now + [0.0, 0.0, 0.05], yaw, opening, f"open_{name}:approach"),
        _wp(grip_now, yaw, opening, speed=0.015, label=f"open_{name}:descend"),
        _wp(grip_now, yaw, CLOSED, wait=2, label=f"open_{name}:close"),
    ]
    for phi in [*np.arange(angle + ARC_STEP, target_angle, ARC_STEP), target_angle]:
        point = panel.rotate(grip_closed, phi)
        plan.append(_wp(point, yaw, CLOSED, speed=0.015, requires=name, label=f"open_{name}:swing"))
    last = plan[-1].target[:3]
    plan += [
        _wp(last, yaw, 0.03, wait=1, finish=True, label=f"open_{name}:release"),
        _wp(last + [0.0, 0.0, 0.05], yaw, 0.03, finish=True, label=f"open_{name}:withdraw"),
    ]
    return plan


def let_go(start: np.ndarray) -> list[Waypoint]:
    return [
        _wp(start[:3], start[3], OPEN, wait=1, finish=True, label="let_go:open"),
        _wp(start[:3] + [0.0, 0.0, 0.05], start[3], OPEN, finish=True, label="let_go:withdraw"),
    ]


def retreat(start: np.ndarray) -> list[Waypoint]:
    """Move straight up, away from the finished box, so that it is seen to hold by itself."""
    return [
        _wp(
            [start[0], start[1], min(float(start[2]) + 0.08, CARRY_HEIGHT)],
            start[3],
            start[4],
            label="retreat",
        )
    ]


def take_item_out(sim: BoxAssemblySim, start: np.ndarray) -> list[Waypoint]:
    """Undo the placement: pick the item back out of the box and carry it well clear of it."""
    lay = sim.layout
    bx, by = lay.box_center
    yaw = grasp_yaw(sim.item_pose()[1])
    aside = [bx, by - lay.box_inner_half - 0.08, CARRY_HEIGHT]
    return [*pick_item(sim, start), _wp(aside, yaw, CLOSED, requires="item", label="undo_place:aside")]
