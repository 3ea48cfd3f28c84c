"""Ground truth of the box-assembly task: which stages hold, and a progress value in [0, 1].

Stages, in order: grasp the item, place it in the box, fold both flaps, close the lid. The current stage is the
first one that does not hold, so undoing an earlier stage (lifting the item back out, re-opening a flap) moves the
stage back and makes progress fall. Progress = (completed stages + a continuous measure within the current
stage) / number of stages, and reaches 1.0 only on success, which also asks the gripper to have let go of
everything for a while, so the assembled box holds by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_io.sim.scene import SceneLayout

STAGES = ("grasp_item", "place_item", "fold_flaps", "close_lid")
FLAP_FOLDED = np.radians(8.0)
LID_CLOSED = np.radians(6.0)
# Flaps start between 60 and 80 degrees, the lid between 85 and 100; these normalise the within-stage measures.
FLAP_OPEN_REF = np.radians(90.0)
LID_OPEN_REF = np.radians(100.0)
# The item must be carried at least this high to clear the open lid; the placement measure follows that path.
CARRY_HEIGHT = 0.27
PLACE_REF = 0.75
REACH_REF = 0.35
LIFTED_CLEARANCE = 0.01


@dataclass(frozen=True)
class SimReading:
    """The raw quantities the task is judged on, read from the simulator."""

    tcp: np.ndarray
    item_pos: np.ndarray
    item_grasped: bool
    panel_angles: dict[str, float]
    hand_touches_scene: bool
    released_steps: int  # consecutive control steps without contact between gripper and box or item


@dataclass(frozen=True)
class TaskState:
    stage: int  # index of the first stage that does not hold, len(STAGES) when all hold
    progress: float
    success: bool
    stages_done: tuple[bool, ...]
    item_in_box: bool
    item_lifted: bool
    reading: SimReading

    @property
    def stage_name(self) -> str:
        """Name of the first stage that does not hold; "done" once all hold."""
        return STAGES[self.stage] if self.stage < len(STAGES) else "done"


def item_over_box(layout: SceneLayout, item_pos: np.ndarray) -> bool:
    """Whether the item's centre lies over the inside of the box, with half an item of margin to the walls."""
    bx, by = layout.box_center
    reach = layout.box_inner_half - 0.5 * layout.item_half
    return abs(item_pos[0] - bx) < reach and abs(item_pos[1] - by) < reach


def item_in_box(layout: SceneLayout, reading: SimReading) -> bool:
    return (
        not reading.item_grasped
        and item_over_box(layout, reading.item_pos)
        and reading.item_pos[2] < layout.wall_height
    )


def place_remaining(layout: SceneLayout, item_pos: np.ndarray) -> float:
    """Length of the remaining carry path: up to carry height, across to the box, down to its floor."""
    bx, by = layout.box_center
    xy = float(np.hypot(item_pos[0] - bx, item_pos[1] - by))
    goal_z = layout.floor_thickness + layout.item_half
    z = float(item_pos[2])
    if item_over_box(layout, item_pos):
        vertical = max(z - goal_z, 0.0)
    else:
        vertical = abs(CARRY_HEIGHT - z) + (CARRY_HEIGHT - goal_z)
    return xy + vertical


def evaluate(layout: SceneLayout, reading: SimReading, success_hold_steps: int) -> TaskState:
    in_box = item_in_box(layout, reading)
    # Held off the table, or held inside the box (taking a placed item back out is the placement undone).
    lifted = reading.item_grasped and (
        reading.item_pos[2] > layout.item_half + LIFTED_CLEARANCE or item_over_box(layout, reading.item_pos)
    )
    flaps = (reading.panel_angles["flap_left"], reading.panel_angles["flap_right"])
    lid = reading.panel_angles["lid"]
    done = (
        in_box or lifted,
        in_box,
        all(a < FLAP_FOLDED for a in flaps),
        lid < LID_CLOSED,
    )
    stage = next((i for i, ok in enumerate(done) if not ok), len(STAGES))
    within = 0.0
    if stage == 0:
        reach = 1.0 - min(float(np.linalg.norm(reading.tcp - reading.item_pos)) / REACH_REF, 1.0)
        within = 0.8 * reach + 0.2 * float(reading.item_grasped)
    elif stage == 1:
        within = 1.0 - min(place_remaining(layout, reading.item_pos) / PLACE_REF, 1.0)
    elif stage == 2:
        within = float(np.mean([np.clip(1.0 - a / FLAP_OPEN_REF, 0.0, 1.0) for a in flaps]))
    elif stage == 3:
        within = float(np.clip(1.0 - lid / LID_OPEN_REF, 0.0, 1.0))
    success = stage == len(STAGES) and reading.released_steps >= success_hold_steps
    if success:
        progress = 1.0
    elif stage == len(STAGES):
        # Everything is in place but the gripper still touches it: not yet shown to hold by itself.
        progress = (len(STAGES) - 0.01) / len(STAGES)
    else:
        progress = (stage + min(within, 0.99)) / len(STAGES)
    return TaskState(
        stage=stage,
        progress=float(progress),
        success=success,
        stages_done=done,
        item_in_box=in_box,
        item_lifted=lifted,
        reading=reading,
    )
