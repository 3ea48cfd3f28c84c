"""The Ray actor that owns one arm, pinned to the node wired to it.

``RobotWorker`` is plain Python (tests call it directly); ``launch_robot_actors`` makes it a Ray actor that asks
for the arm's custom resource (``robot:<name>`` unless configured), which only that arm's node advertises, and
restarts it after a crash. The constructor only connects and opens the store, so running it again after a
restart is safe: the episode that was in flight stays torn in the store's staging area and is never sampled.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.collect import collect_episode
from actors.console import ConsoleConfig, ConsoleServer, console_app
from actors.episode import ActionSource, TeleoperatorAsPolicy
from actors.live_value import LiveValue, LiveValueConfig
from actors.operator import ConsoleOutcome, OperatorChannel
from actors.outcome import OutcomeLabeller, make_labeller
from actors.weights import PackedCheckpoint, unpack_checkpoint
from policy.async_chunks import AsyncChunkPolicy, InferenceConfig
from replay import ReplayStore, StoreSchema
from robot_io import RobotConfig, make_robot
from robot_io.robot import Teleoperator
from telemetry import RoleRun, RunTelemetry

PURPOSES = ("demo", "rollout", "eval")


@dataclass
class ActorSettings:
    """Everything one robot actor needs, resolved by the driver (actors never see Hydra)."""

    robot: RobotConfig
    store_url: str
    task: str
    # "simulator" (ground truth) or "operator" (a prompt on the arm's node, unlabelled after the time-out).
    outcome_source: str = "simulator"
    outcome_timeout_s: float = 20.0
    # Torch device for policy inference on the arm's node.
    device: str = "cpu"
    # On the control thread, or chunks predicted in a worker thread (the default on paced, i.e. real, arms).
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # The operator console served on the arm's node (on by default where an operator gives the outcomes).
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    # This arm's own W&B run (episode summaries); None: no W&B.
    telemetry: RunTelemetry | None = None
    # The value model scoring each episode live for the console, and when a falling value asks for a takeover.
    live_value: LiveValueConfig = field(default_factory=LiveValueConfig)
    store_options: dict[str, Any] = field(default_factory=dict)


class RobotWorker:
    def __init__(self, settings: ActorSettings) -> None:
        self.settings = settings
        self.robot = make_robot(settings.robot)
        self.robot.connect()
        # Every arm of a run shares one store; the first to arrive creates it from its spec, and an arm whose
        # cameras or dimensions differ is refused with the store's schema-mismatch error.
        self.store = ReplayStore.open_or_create(
            settings.store_url,
            StoreSchema.from_robot_spec(self.robot.spec),
            storage_options=settings.store_options or None,
        )
        self.corrector, self.demonstrator = self._make_teleoperators()
        self.wandb = RoleRun(settings.telemetry, {"robot": asdict(settings.robot)})
        self.success_detector = (
            load_callable(settings.robot.success_detector) if settings.robot.success_detector else None
        )
        self.episodes_run = 0
        self.channel: OperatorChannel | None = None
        self.console: ConsoleServer | None = None
        if settings.console.is_enabled(settings.outcome_source):
            self._start_console()
            self.labeller: OutcomeLabeller = (
                ConsoleOutcome(self.channel, settings.outcome_timeout_s)
                if settings.outcome_source == "operator"
                else make_labeller(settings.outcome_source)
            )
        else:
            self.labeller = make_labeller(settings.outcome_source, settings.outcome_timeout_s)
        self.live_value: LiveValue | None = None
        self._value_dir: Path | None = None
        self.policy: ActionSource | None = None
        self.policy_version = "none"
        self._pending: PackedCheckpoint | None = None
        self._policy_dir: Path | None = None

    # -- weights ------------------------------------------------------------------------------------------
    def set_policy(self, packed: PackedCheckpoint, load_now: bool = False) -> str:
        """Queue new weights; they are swapped in at the next episode boundary, never mid-episode.

        ``load_now`` loads them at once (the caller knows no episode is running), so a checkpoint that cannot
        be loaded fails the deploy stage rather than the next episode.
        """
        self._pending = packed
        if load_now:
            self._swap_policy_if_pending()
        return packed.version

    def _swap_policy_if_pending(self) -> None:
        if self._pending is None:
            return
        from policy import load_policy

        folder = unpack_checkpoint(self._pending)
        policy: ActionSource = load_policy(folder, device=self.settings.device)
        if self.settings.inference.is_async(self.settings.robot.is_paced):
            policy = AsyncChunkPolicy(policy, self.settings.inference)
        self._close_policy()
        self.policy, self.policy_version, self._policy_dir = policy, self._pending.version, folder
        self._pending = None

    def _close_policy(self) -> None:
        close = getattr(self.policy, "close", None)
        if close is not None:
            close()  # an asynchronous policy's inference thread
        if self._policy_dir is not None:
            shutil.rmtree(self._policy_dir, ignore_errors=True)

    def set_value_model(self, packed: PackedCheckpoint) -> bool:
        """Score this arm's episodes live with this value checkpoint (for the console); False, with the reason
        logged, when there is no console to show it or the model cannot score single frames (WVM)."""
        if self.channel is None or self.settings.live_value.rate_hz == 0:
            return False
        from valuemodel.live import FrameScorer

        folder = unpack_checkpoint(packed)
        try:
            scorer = FrameScorer(folder, task=self.settings.task, device=self.settings.device)
        except ValueError as exc:
            logging.getLogger(__name__).warning("no live value on arm %s: %s", self.settings.robot.name, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return False
        self._stop_live_value()
        self.live_value = LiveValue(self.channel, scorer.score, self.settings.live_value)
        self._value_dir = folder
        return True

    def _stop_live_value(self) -> None:
        if self.live_value is not None:
            self.live_value.stop()
            self.live_value = None
        if self._value_dir is not None:
            shutil.rmtree(self._value_dir, ignore_errors=True)
            self._value_dir = None

    def _record_help_requests(self, episode_id: str, length: int) -> None:
        """The steps at which the live value asked for a takeover, as a per-step column beside the episode."""
        if self.live_value is None or self.channel is None or self.channel.episode.episode_id != episode_id:
            return
        mask = np.zeros(length, dtype=bool)
        for step in self.channel.help_steps:
            mask[min(max(step - 1, 0), length - 1)] = True
        self.store.write_derived("help_request", "live-value", episode_id, mask)

    # -- episodes -----------------------------------------------------------------------------------------
    def run_episodes(
        self, purpose: str, round: int, seeds: list[int], policy: PackedCheckpoint | None = None
    ) -> list[dict]:
        """Run one episode per seed. "demo": the demonstrator drives; "rollout": the policy drives and the
        corrector may take over; "eval": the policy alone. Returns one summary per committed episode.

        ``policy``: weights to swap in before the first episode (the scheduler of ``loop.mode=continual`` sends
        a newly deployed or a candidate policy with the arm's next episode, so it loads at an episode boundary)."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
        if policy is not None:
            # This call runs ``policy``: weights queued earlier for another version are dropped.
            self._pending = policy if policy.version != self.policy_version else None
        summaries = []
        for seed in seeds:
            self._wait_for_reset(purpose)
            self._swap_policy_if_pending()
            source, teleop, events = self._sources(purpose)
            collected = collect_episode(
                self.robot,
                source,
                self.store,
                self.labeller,
                robot_id=self.settings.robot.name,
                task=self.settings.task,
                round=round,
                policy_version=self.policy_version if purpose != "demo" else "demo",
                purpose=purpose,
                max_steps=self.settings.robot.episode_limit_steps,
                seed=seed,
                teleop=teleop,
                realtime=self.settings.robot.is_paced,
                episode_events=events,
                channel=self.channel,
                success_detector=self.success_detector,
            )
            self.episodes_run += 1
            result = collected.result
            self._record_help_requests(collected.episode_id, result.steps)
            self.wandb.log(
                {
                    "episode/index": self.episodes_run,
                    "episode/round": round,
                    "episode/success": float(collected.outcome == "success"),
                    "episode/labelled": float(collected.outcome != "unlabelled"),
                    "episode/steps": result.steps,
                    "episode/intervention_rate": result.intervention_steps / max(result.steps, 1),
                    "episode/inference_holds": result.inference_holds,
                    "episode/wall_time_s": result.wall_time_s,
                    **{f"safety/{k}": v for k, v in result.safety.items()},
                }
            )
            summaries.append(
                {
                    "episode_id": collected.episode_id,
                    "robot": self.settings.robot.name,
                    "purpose": purpose,
                    "round": round,
                    "policy_version": self.policy_version if purpose != "demo" else "demo",
                    "outcome": collected.outcome,
                    **collected.result.summary(),
                }
            )
        return summaries

    def info(self) -> dict:
        import os
        import socket

        return {
            "robot": self.settings.robot.name,
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "control_hz": self.robot.spec.control_hz,
            "spec": self.robot.spec.to_dict(),
            "policy_version": self.policy_version,
            "safety": self.robot.stats.as_dict(),
            "console_url": self.console.url if self.console is not None else None,
            "reconnects": getattr(self.robot.inner, "reconnects", 0),
        }

    def node_id(self) -> str:
        """The Ray node this arm's actor runs on (it must be the node wired to the arm)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def close(self) -> None:
        self._stop_live_value()
        self.wandb.finish()
        if self.console is not None:
            self.console.stop()
        self.robot.disconnect()
        self._close_policy()

    # -- internals ----------------------------------------------------------------------------------------
    def _start_console(self) -> None:
        config = self.settings.console
        self.channel = OperatorChannel(
            self.settings.robot.name, corrector_answers=self.settings.live_value.corrector_answers
        )
        token = config.resolve_token()
        app = console_app(self.channel, token, store=self.store, teleop=self.corrector)
        # Two arms' actors on one node can pick the same free port at once: the loser takes the next one.
        for attempt in range(5):
            port = config.port + attempt if config.port else 0
            try:
                self.console = ConsoleServer(app, config.host, port, token).start()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        print(f"[vivarl] operator console for arm {self.settings.robot.name}: {self.console.url}", flush=True)

    def _wait_for_reset(self, purpose: str) -> None:
        """On a real arm with a console, the next episode starts once the operator says the scene is reset (the
        simulator resets itself). The arm holds meanwhile: nothing is commanded between episodes."""
        config = self.settings.console
        if self.channel is None or not config.confirm_reset or not self.settings.robot.is_real:
            return
        if not self.channel.wait_for_reset(config.reset_timeout_s or None, next_purpose=purpose):
            raise RuntimeError(
                f"arm '{self.settings.robot.name}': nobody confirmed the scene reset within "
                f"{config.reset_timeout_s} s (console.reset_timeout_s)"
            )

    def _sources(self, purpose: str) -> tuple[ActionSource, Teleoperator | None, Any]:
        if purpose == "demo":
            if self.demonstrator is None:
                name = self.settings.robot.name
                leader = (
                    f"attach a leader arm (robots.{name}.lerobot.teleop_type and teleop_kwargs), which then drives "
                    "round 0's demonstrations from the console, or "
                    if self.settings.robot.type == "lerobot"
                    else ""
                )
                raise RuntimeError(
                    f"arm '{name}' has no demonstrator: {leader}record demonstrations with LeRobot's tools and "
                    "import them with `vivarl-replay import`"
                )
            return (
                TeleoperatorAsPolicy(self.demonstrator),
                None,
                lambda: getattr(self.demonstrator, "events", ()),
            )
        if self.policy is None:
            raise RuntimeError(f"arm '{self.settings.robot.name}' has no policy yet: call set_policy first")
        teleop = self.corrector if purpose == "rollout" else None
        return self.policy, teleop, (lambda: getattr(self.corrector, "events", ())) if teleop else None

    def _make_teleoperators(self) -> tuple[Teleoperator | None, Teleoperator | None]:
        """(corrector, demonstrator): who takes over during rollouts, and who drives demonstrations."""
        robot = self.settings.robot
        if robot.type == "sim_box":
            from robot_io.sim import ScriptedExpert

            sim = self.robot.inner
            return (
                ScriptedExpert(sim, robot.sim_box.expert, demo=False),
                ScriptedExpert(sim, robot.sim_box.expert, demo=True),
            )
        if robot.type == "lerobot":
            from robot_io.lerobot_adapter import LeaderDemonstrator, make_lerobot_teleop

            teleop = make_lerobot_teleop(robot.lerobot, action_names=self.robot.spec.action_names)
            if teleop is None:
                return None, None
            teleop.connect()
            # One leader arm serves both: it corrects rollouts when grabbed and drives round 0's demonstrations.
            return teleop, LeaderDemonstrator(teleop)
        teleop = self.robot.inner.teleoperator()
        return teleop, None


def load_callable(spec: str) -> Any:
    """The function named ``module:function`` (robots.<name>.success_detector), or a clear error."""
    import importlib

    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"success_detector must be 'module:function', got {spec!r}")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"success_detector {spec!r} cannot be loaded: {exc}") from exc
    if not callable(function):
        raise ValueError(f"success_detector {spec!r} is not callable")
    return function


def check_resources(robots: list[RobotConfig], available: dict[str, float]) -> None:
    """Fail before any arm moves when a robot's node resource is advertised by no node of the cluster."""
    missing = [r for r in robots if available.get(r.resource, 0) < 1]
    if missing:
        lines = [
            f"  arm '{r.name}' needs resource '{r.resource}': start its node with "
            f"ray start --address=<head> --resources='{{\"{r.resource}\": 1}}'"
            for r in missing
        ]
        raise RuntimeError("no node of the Ray cluster is wired to these arms:\n" + "\n".join(lines))


def launch_robot_actors(settings: list[ActorSettings], max_restarts: int = 3) -> dict[str, Any]:
    """One Ray actor per arm, each pinned by its custom resource; returns handles by arm name."""
    import ray

    check_resources([s.robot for s in settings], ray.cluster_resources())
    remote_worker = ray.remote(RobotWorker)
    handles = {}
    for s in settings:
        handles[s.robot.name] = remote_worker.options(
            name=f"vivarl-robot-{s.robot.name}",
            num_cpus=1,
            resources={s.robot.resource: 1},
            max_restarts=max_restarts,
            # A task that died with the actor is not retried blindly: the round driver counts committed
            # episodes and asks again for exactly the missing ones.
            max_task_retries=0,
        ).remote(s)
    return handles
