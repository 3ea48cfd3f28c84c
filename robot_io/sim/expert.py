"""``ScriptedExpert``: the box-assembly demonstrator, and the simulated human who takes over to correct a policy.

It is a waypoint state machine with privileged access to the simulator. Each step it reads the task's ground
truth, picks a goal (place the item, fold a flap, close the lid, or first undo whatever blocks that, such as a
panel folded too early), and follows a waypoint plan built from the current state. Because plans are rebuilt
whenever the goal changes or a plan's precondition breaks, the expert can take over from any state.

Two ways to use it, both through the ``Teleoperator`` protocol's ``get_action``:

- demonstrations (``demo=True``, the default): it always acts; ``get_action`` never returns None.
- corrections (``demo=False``): it returns None while the policy drives. It takes over by itself once progress has
  not risen for ``ExpertConfig.takeover_stall_steps`` steps or the item was dropped, or when the actor calls
  ``take_over()``; it hands back after ``handback_after_stages`` completed stages, or on ``hand_back()``. A non-None
  action means "this step is an intervention".

Suboptimality knobs (``ExpertConfig``) are drawn per episode from the episode's seed: action noise, hesitation
(pauses at the start of a stage), retries (a completed stage undone and redone), a dropped item (then it gives
up), and a stall (it stops acting until the time limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_io.config import ExpertConfig
from robot_io.sim import skills
from robot_io.sim.box_sim import MAX_ACTION_DELTA, PANELS, BoxAssemblySim
from robot_io.sim.task import FLAP_FOLDED, STAGES, TaskState
from robot_io.spec import Observation

# Panels that lean into the box below these angles block placing the item, or the lid blocks folding the flaps.
LID_CLEAR = np.radians(80.0)
FLAP_CLEAR = np.radians(55.0)
OPEN_TARGET = {"flap_left": np.radians(72.0), "flap_right": np.radians(72.0), "lid": np.radians(92.0)}
UNDO_TARGET = np.radians(60.0)
POSITION_TOLERANCE = 0.006
# Contact can stop the gripper short of a pushing target; after this many extra steps the expert moves on.
PATIENCE = 4
# An undo whose plan had to restart this many times (its grasp of the panel kept failing) is abandoned: a retry is
# a detour, and retrying a failed undo for ever would turn a knob meant to make a V into a time-out.
MAX_UNDO_STARTS = 2


@dataclass
class EpisodeKnobs:
    """The suboptimal behaviours drawn for one episode."""

    pause_steps: list[int] = field(default_factory=lambda: [0] * len(STAGES))
    retry: list[bool] = field(default_factory=lambda: [False] * len(STAGES))
    drop_at: float | None = None
    stall_stage: int | None = None


class ScriptedExpert:
    """A ``Teleoperator`` for the ``BoxAssemblySim`` it is given (see the module docstring for the two modes)."""

    def __init__(self, sim: BoxAssemblySim, config: ExpertConfig | None = None, demo: bool = True) -> None:
        self.sim = sim
        self.config = config or ExpertConfig()
        self.demo = demo
        self.knobs = EpisodeKnobs()
        # What the expert did this episode beyond plain progress: pauses, retries, drops, takeovers (logs, tests).
        self.events: list[str] = []
        self._connected = False
        self._episode = -2
        self._intervening = False
        self._command = np.zeros(5)
        self._plan: list[skills.Waypoint] = []
        self._goal: tuple | None = None
        self._at_target = 0
        self._max_stage = -1
        self._pause_left = 0
        self._given_up = False
        self._retry_pending: int | None = None
        self._retries_done: set[int] = set()
        self._undo_starts = 0
        self._dropped_once = False
        self._noise_rng = np.random.default_rng(0)
        self._best_progress = 0.0
        self._stalled_steps = 0
        self._takeover_stage = 0

    # -- Teleoperator protocol ------------------------------------------------------------------------------
    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def get_action(self, observation: Observation | None = None) -> np.ndarray | None:
        """The expert's absolute action, or None while (in correction mode) the policy keeps control."""
        self._sync_episode()
        if self.demo:
            return self.act()
        if not self._intervening:
            self._watch_policy()
            if not self._intervening:
                return None
        action = self.act()
        task = self.sim.task
        handback = self.config.handback_after_stages
        if task.success or (handback > 0 and task.stage >= self._takeover_stage + handback):
            self.hand_back()
        return action

    # -- correction API -------------------------------------------------------------------------------------
    @property
    def intervening(self) -> bool:
        """True while the expert has control (always, in demo mode)."""
        return self.demo or self._intervening

    def take_over(self) -> None:
        """Take control from the policy now; the plan is rebuilt from the simulator's current state."""
        self._sync_episode()
        if not self._intervening:
            self._intervening = True
            self._takeover_stage = self.sim.task.stage
            self._replan_from_here()
            self.events.append(f"take_over:{self.sim.step_count}")

    def hand_back(self) -> None:
        """Return control to the policy (``get_action`` returns None from the next call)."""
        if self._intervening:
            self._intervening = False
            self._best_progress = self.sim.task.progress
            self._stalled_steps = 0
            self.events.append(f"hand_back:{self.sim.step_count}")

    # -- acting ---------------------------------------------------------------------------------------------
    def act(self) -> np.ndarray:
        """One step of the expert's own behaviour (knobs included), regardless of mode."""
        self._sync_episode()
        task = self.sim.task
        self._on_stage(task)
        if self._given_up or self._pause_left > 0:
            self._pause_left = max(self._pause_left - 1, 0)
            return self._command.astype(np.float32)
        goal = self._choose_goal(task)
        # Swinging a panel or pushing it shut is seen through even if the stage changes half-way (that is usually
        # the point), and so is letting go and backing off.
        if self._plan and (self._goal[0] in ("open", "fold", "undo") or all(wp.finish for wp in self._plan)):
            goal = self._goal
        if goal != self._goal or not self._plan:
            self._make_plan(goal)
        if self._plan and self._plan[0].requires and self.sim.grasped != self._plan[0].requires:
            self._make_plan(goal)
        self._follow()
        action = self._command.copy()
        if self.config.action_noise > 0:
            action[:3] += self._noise_rng.normal(0.0, self.config.action_noise, 3)
        return action.astype(np.float32)

    def _sync_episode(self) -> None:
        if self.sim.episode_index == self._episode:
            return
        self._episode = self.sim.episode_index
        rng = np.random.default_rng([self.sim.episode_seed, 0x5EED])
        cfg = self.config
        lo, hi = (list(cfg.hesitation_steps) + [0, 0])[:2]
        # Every draw is made whatever the probabilities, so turning one knob on leaves the others' draws unchanged.
        pause_draws = [(rng.random(), int(rng.integers(min(lo, hi), max(lo, hi) + 1))) for _ in STAGES]
        retry_draws = rng.random(len(STAGES))
        drop_draw, drop_at = rng.random(), rng.uniform(0.3, 0.6)
        stall_draw, stall_stage = rng.random(), int(rng.integers(0, len(STAGES)))
        self.knobs = EpisodeKnobs(
            pause_steps=[n if u < cfg.hesitation_prob else 0 for u, n in pause_draws],
            # Grasping is not undone on its own: its retry is the placement's. Closing the lid is not retried: the
            # box holds, and the episode succeeds, as soon as the lid is shut and the hand has let go, before an
            # undo could reach the lid, so a lid "retry" would be tagged without any V in progress.
            retry=[False] + [bool(u < cfg.retry_prob) for u in retry_draws[1:3]] + [False],
            drop_at=drop_at if drop_draw < cfg.drop_prob else None,
            stall_stage=stall_stage if stall_draw < cfg.stall_prob else None,
        )
        self._noise_rng = np.random.default_rng([self.sim.episode_seed, 0x401E])
        self.events = []
        self._intervening = False
        self._max_stage = -1
        self._pause_left = 0
        self._given_up = False
        self._retry_pending = None
        self._retries_done = set()
        self._undo_starts = 0
        self._dropped_once = False
        self._best_progress = 0.0
        self._stalled_steps = 0
        self._replan_from_here()

    def _replan_from_here(self) -> None:
        self._command = self.sim.last_command.astype(np.float64)
        self._plan = []
        self._goal = None
        self._at_target = 0

    def _watch_policy(self) -> None:
        """Decide, as a watching human would, whether the policy needs help."""
        task = self.sim.task
        if task.progress > self._best_progress + 1e-3:
            self._best_progress = task.progress
            self._stalled_steps = 0
        else:
            self._stalled_steps += 1
        stall_limit = self.config.takeover_stall_steps
        if self.sim.dropped or (stall_limit > 0 and self._stalled_steps >= stall_limit):
            self.take_over()

    def _on_stage(self, task: TaskState) -> None:
        """Bookkeeping when a new stage is reached: schedule pauses, retries, stalls."""
        if task.stage <= self._max_stage:
            return
        for completed in range(max(self._max_stage, 0), task.stage):
            if self.knobs.retry[completed] and completed not in self._retries_done and self._max_stage >= 0:
                self._retry_pending = completed
        self._max_stage = task.stage
        if task.stage < len(STAGES):
            self._pause_left = self.knobs.pause_steps[task.stage]
            if self._pause_left:
                self.events.append(f"pause:{STAGES[task.stage]}:{self._pause_left}")
            if self.knobs.stall_stage == task.stage:
                self._given_up = True
                self.events.append(f"stall:{STAGES[task.stage]}")

    def _choose_goal(self, task: TaskState) -> tuple:
        if self._retry_pending is not None:
            return ("undo", self._retry_pending)
        held = self.sim.grasped
        if held in PANELS and self._goal != ("open", held):
            return ("let_go",)
        angles = task.reading.panel_angles
        if task.stage <= 1:
            if angles["lid"] < LID_CLEAR:
                return ("set_down",) if held == "item" else ("open", "lid")
            low_flap = min(("flap_left", "flap_right"), key=lambda p: angles[p])
            if angles[low_flap] < FLAP_CLEAR:
                return ("set_down",) if held == "item" else ("open", low_flap)
            return ("place",)
        if held == "item":
            return ("let_go",)
        if task.stage == 2:
            if angles["lid"] < LID_CLEAR:
                return ("open", "lid")
            left_folded = angles["flap_left"] < FLAP_FOLDED
            return ("fold", "flap_right" if left_folded else "flap_left")
        if task.stage == 3:
            return ("fold", "lid")
        return ("retreat",)

    def _make_plan(self, goal: tuple) -> None:
        sim, start = self.sim, self._command
        if goal[0] == "undo":
            self._undo_starts = self._undo_starts + 1 if goal == self._goal else 1
            if self._undo_starts > MAX_UNDO_STARTS:
                self._retries_done.add(goal[1])
                self._retry_pending = None
                self.events.append(f"retry_abandoned:{STAGES[goal[1]]}")
                goal = self._choose_goal(self.sim.task)
        kind = goal[0]
        if kind == "undo":
            stage = goal[1]
            if stage == 1:
                plan = skills.take_item_out(sim, start)
            else:
                plan = skills.open_panel(sim, start, "flap_right", UNDO_TARGET)
            self.events.append(f"retry:{STAGES[stage]}")
        elif kind == "place":
            drop = self.knobs.drop_at if not self._dropped_once else None
            if sim.grasped == "item":
                plan = skills.carry_and_place(sim, start, drop)
            else:
                plan = skills.pick_item(sim, start)
                plan += skills.carry_and_place(sim, plan[-1].target, drop)
        elif kind == "fold":
            plan = skills.fold_panel(sim, start, goal[1])
        elif kind == "open":
            plan = skills.open_panel(sim, start, goal[1], OPEN_TARGET[goal[1]])
        elif kind == "set_down":
            plan = skills.set_item_down(sim, start)
        elif kind == "let_go":
            plan = skills.let_go(start)
        else:
            plan = skills.retreat(start)
        self._goal, self._plan, self._at_target = goal, plan, 0

    def _follow(self) -> None:
        if not self._plan:
            return
        wp = self._plan[0]
        delta = wp.target - self._command
        dist = float(np.linalg.norm(delta[:3]))
        speed = min(wp.speed, float(MAX_ACTION_DELTA[0]))
        if dist > speed:
            delta[:3] *= speed / dist
        delta[3:] = np.clip(delta[3:], -MAX_ACTION_DELTA[3:] * 0.75, MAX_ACTION_DELTA[3:] * 0.75)
        self._command = self._command + delta
        if not np.allclose(self._command, wp.target, atol=1e-9):
            return
        self._at_target += 1
        measured = self.sim.hold_action()
        settled = np.linalg.norm(measured[:3] - wp.target[:3]) < POSITION_TOLERANCE
        if (settled and self._at_target > wp.wait) or self._at_target > wp.wait + PATIENCE:
            self._plan.pop(0)
            self._at_target = 0
            if wp.label == "place:slip":
                self._dropped_once = True
                self._given_up = True
                self.events.append("drop")
            if not self._plan and self._goal is not None and self._goal[0] == "undo":
                self._retries_done.add(self._goal[1])
                self._retry_pending = None


def run_expert_episode(
    sim: BoxAssemblySim, expert: ScriptedExpert, seed: int, render: bool = True
) -> list[tuple[Observation, np.ndarray]]:
    """Run one episode under ``expert`` (its None means: hold) and return (observation, applied action) pairs.

    The episode ends on success, at the time limit, or once the item lies dropped outside the box: a drop is
    final for a demonstrator (it gives up), and recording it standing idle until the time limit would bury the
    states around the drop under hundreds of copies of one motionless frame. The final observation is
    ``sim.get_observation()``.
    ``render=False`` skips the cameras (observations then carry no images), for tests that only need progress.
    """
    obs = sim.start_episode(seed)
    steps: list[tuple[Observation, np.ndarray]] = []
    while not sim.episode_done and not sim.dropped:
        action = expert.get_action(obs)
        applied = sim.send_action(sim.hold_action() if action is None else action)
        steps.append((obs, applied))
        obs = sim.get_observation(render=render)
    return steps
