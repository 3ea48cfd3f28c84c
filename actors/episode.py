"""The episode loop an actor runs on one arm: plain Python, so tests and the main job call it without Ray.

Each control step reads an observation, lets a human (or, in simulation, the scripted expert) take over if they
want to, otherwise asks the policy, sends the action through the robot's safety layer, and hands the step to
``on_step`` (the replay writer in an actor). The recorded action is the one the robot applied, never the request.
When a takeover starts the policy is told to discard its plan, so that after the hand-back it plans afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from robot_io.robot import Robot, Teleoperator
from robot_io.spec import Observation


class ActionSource(Protocol):
    """Anything that maps an observation to an absolute action: a trained policy or the scripted expert."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: Observation) -> np.ndarray | None:
        """The action for this step, or None when none is ready (an asynchronous policy whose next chunk is still
        being predicted): the loop then holds the arm for the step and counts it, rather than wait."""
        ...

    def discard_plan(self) -> None:
        """Forget actions planned from earlier observations; the loop calls it when a corrector takes over.

        ``act`` is not called while the corrector drives, so a source that plans ahead (a chunking policy's
        action queue, its temporally ensembled chunks) would otherwise resume the stale plan at the hand-back
        and drag the arm back to where the takeover began. It is a required method, not an optional one the
        loop looks for: a planning source that lacked it would silently keep that bug, so every source says
        explicitly what a takeover means to it (a no-op for sources that plan nothing).
        """
        ...


class EpisodeControl(Protocol):
    """The operator's word during an episode (``actors.operator.OperatorChannel``): end it now, pause the arm;
    and what the loop tells the operator after every step."""

    def end_requested(self) -> bool: ...

    def paused(self) -> bool: ...

    def observe(self, observation: Observation, intervention: bool, held: bool) -> None: ...

    def takeover_requested(self) -> bool: ...


class TeleoperatorAsPolicy:
    """Lets a teleoperator that always acts (the scripted expert in demo mode, a human recording demonstrations)
    drive a whole episode as the policy; its steps are demonstrations, not interventions."""

    def __init__(self, teleop: Teleoperator) -> None:
        self.teleop = teleop

    def reset(self, seed: int | None = None) -> None:
        pass

    def discard_plan(self) -> None:
        # The teleoperator decides afresh from every observation: there is no plan to go stale.
        pass

    def act(self, observation: Observation) -> np.ndarray:
        action = self.teleop.get_action(observation)
        if action is None:
            raise RuntimeError("the demonstrating teleoperator returned no action; it must act on every step")
        return action


@dataclass
class Step:
    observation: Observation
    action: np.ndarray
    intervention: bool


@dataclass
class EpisodeResult:
    seed: int | None
    steps: int
    success: bool
    failed: bool
    final_progress: float | None
    intervention_steps: int
    wall_time_s: float
    # The configured success detector ended the episode (the outcome is then success, nobody is asked).
    detected_success: bool = False
    # Control steps the arm was held because the policy had no action ready (asynchronous inference running late);
    # they are not among ``steps`` (the recorded ones).
    inference_holds: int = 0
    safety: dict[str, int] = field(default_factory=dict)
    # The observation after the last action: what the outcome is judged on.
    final_observation: Observation | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """The plain numbers, for logs and JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "final_observation"}


def episode_finished(observation: Observation) -> bool:
    """True when the source reports the episode over (the simulator sets ``done`` on success, failure, time-out)."""
    return observation.info.get("done", 0.0) >= 1.0


def run_episode(
    robot: Robot,
    policy: ActionSource,
    *,
    max_steps: int,
    seed: int | None = None,
    teleop: Teleoperator | None = None,
    on_step: Callable[[Step], None] | None = None,
    realtime: bool = False,
    control: EpisodeControl | None = None,
    success_detector: Callable[[Observation], bool] | None = None,
) -> EpisodeResult:
    """Run one episode; with ``realtime`` the loop is paced at the robot's control rate (real arms).

    With ``control`` the episode also ends on the operator's word, and while the operator pauses it the arm holds
    and nothing is recorded (a paused step is no step of the episode; the policy plans afresh after the pause).

    A step with no action ready (``act`` returned None) holds the arm and counts against ``max_steps`` like any
    control step, but is not recorded: it is no action of the policy's, and recorded holds would teach it to stand
    still at the start of every episode.

    ``success_detector`` (a real arm's own check, e.g. a scale or a vision model) ends the episode as a success
    the first time it returns True for an observation.
    """
    start = time.monotonic()
    stats = getattr(robot, "stats", None)
    safety_before = stats.as_dict() if stats is not None else {}
    period = 1.0 / robot.spec.control_hz
    # Looked up before the arm moves, so that a source without the hook fails here, not at the first takeover.
    discard_plan = policy.discard_plan
    policy.reset(seed)
    observation = robot.start_episode(seed)
    steps = interventions = holds = 0
    intervening = paused = detected = False
    next_tick = time.monotonic()
    while steps + holds < max_steps and not episode_finished(observation):
        # An episode has at least one step: the store keeps no empty episodes.
        if control is not None and steps > 0 and control.end_requested():
            break
        if success_detector is not None and steps > 0 and success_detector(observation):
            detected = True
            break
        if control is not None and control.paused():
            paused = True
            robot.send_action(robot.hold_action())
            time.sleep(period)
            next_tick = time.monotonic()
            observation = robot.get_observation()
            continue
        if paused:
            # The plan was made before the pause, for a scene the operator may have touched since.
            discard_plan()
            paused = False
        if control is not None and teleop is not None and control.takeover_requested():
            # The live value asked for help: a corrector that can take over on request does, on this thread.
            take_over = getattr(teleop, "take_over", None)
            if take_over is not None:
                take_over()
        correction = teleop.get_action(observation) if teleop is not None else None
        intervention = correction is not None
        if intervention and not intervening:
            # Discarded when the takeover starts rather than at the hand-back: the plan is stale from the first
            # corrected step, and the first policy step after the hand-back then plans from its own observation.
            discard_plan()
        intervening = intervention
        requested = correction if intervention else policy.act(observation)
        held = requested is None
        if held:
            # Held from the last reading: no read of its own, and the safety layer still applies to it.
            requested = robot.hold_action()
            holds += 1
        applied = robot.send_action(requested)
        if control is not None:
            control.observe(observation, intervention, held)
        if not held:
            if on_step is not None:
                on_step(Step(observation=observation, action=applied, intervention=intervention))
            steps += 1
            interventions += int(intervention)
        if realtime:
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                # An overrun step is not made up with a burst of quick ones: the arm keeps its control period.
                next_tick = time.monotonic()
        observation = robot.get_observation()
    end_episode = getattr(robot, "end_episode", None)
    if end_episode is not None:
        end_episode()
    info = observation.info
    safety_after = stats.as_dict() if stats is not None else {}
    return EpisodeResult(
        seed=seed,
        steps=steps,
        success=detected or info.get("success", 0.0) >= 1.0,
        failed=info.get("failed", 0.0) >= 1.0,
        final_progress=info.get("progress"),
        intervention_steps=interventions,
        wall_time_s=time.monotonic() - start,
        inference_holds=holds,
        detected_success=detected,
        safety={key: safety_after[key] - safety_before[key] for key in safety_after},
        final_observation=observation,
    )
