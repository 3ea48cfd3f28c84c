"""The round driver: the one place that wires arms, replay, learners and models together with Ray.

Each round runs named, timed stages (collect → refit value → label advantages → train policy → deploy → evaluate),
blocking on the remote results it needs. A stage is marked done in ``run_state.json`` only once its effects are
durable, so ``vivarl`` with the same ``run_dir`` resumes at the first unfinished stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from actors.robot_actor import ActorSettings, launch_robot_actors
from actors.weights import pack_checkpoint
from improve.collection import collect, committed_episodes, episode_metrics
from improve.config import VivarlConfig
from improve.monitor import RoundMonitor
from improve.report import progress_bar, round_table, stage_table, stage_timer, value_metrics
from improve.run_state import STAGES, RunState
from learners.policy_actor import launch_policy_learner
from learners.policy_labels import label_store
from learners.value_actor import launch_value_learner
from replay import EpisodeFilter, ReplayStore

log = logging.getLogger(__name__)


def config_fingerprint(config: VivarlConfig) -> str:
    """What must not change between a run and its resumption (the arms and the loop's sizes may)."""
    keep = {k: v for k, v in asdict(config).items() if k in ("task", "valuemodel", "labelling")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RoundDriver:
    def __init__(self, config: VivarlConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console()
        self.run_dir = Path(config.run_dir)
        self.run_name = self.run_dir.resolve().name
        self.state = self._load_or_start_state()
        self.store: ReplayStore | None = None
        self.actors: dict[str, Any] = {}
        self.value_learner: Any = None
        self.policy_learner: Any = None
        self.monitor: RoundMonitor | None = None
        self._deployed: tuple[str, Any] | None = None
        self._control_hz = 10.0

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> RunState:
        self._preflight()
        self._start_ray()
        self.monitor = RoundMonitor(self.config.wandb, self.run_name, self.run_dir, asdict(self.config))
        started = time.monotonic()
        try:
            self._start_workers()
            for round_index in range(self.config.loop.rounds + 1):
                if self._out_of_budget(started):
                    self.console.print(f"[yellow]budget of {self.config.loop.budget_hours} h used: stopping")
                    break
                for stage in STAGES:
                    if self.state.is_done(round_index, stage):
                        continue
                    with stage_timer(self.console, round_index, stage) as timer:
                        outputs = getattr(self, f"_stage_{stage}")(round_index)
                    self.state.mark_done(round_index, stage, timer.seconds, **outputs)
                    self.state.save(self.run_dir)
                self._report_round(round_index)
        finally:
            if self.monitor is not None:
                self.monitor.finish()
        return self.state

    # -- stages ---------------------------------------------------------------------------------------------
    def _stage_collect(self, r: int) -> dict[str, Any]:
        purpose, target = (
            ("demo", self.config.loop.demo_episodes)
            if r == 0
            else ("rollout", self.config.loop.episodes_per_round)
        )
        records = self._collect(r, purpose, target)
        return {"collected": len(records), "purpose": purpose}

    def _stage_refit_value(self, r: int) -> dict[str, Any]:
        import ray

        if not self.config.loop.use_learned_value:
            return {"value_version": None}
        version = ray.get(self.value_learner.refit.remote(r))
        return {"value_version": int(version)}

    def _stage_label_advantages(self, r: int) -> dict[str, Any]:
        import ray

        value_key = None
        version = self.state.round_outputs(r).get("value_version")
        if version is not None:
            ray.get(self.value_learner.label.remote(version))
            value_key = self.config.value_learner.label_key.format(
                version=version, kind=self.config.valuemodel.kind
            )
        run = f"round{r:03d}" + (f"-{value_key}" if value_key else "-progress")
        labelling = replace(self.config.labelling, run=run, value_key=value_key)
        # Evaluation episodes are measurements of a policy, not training data.
        report = label_store(
            self._store(), labelling, EpisodeFilter(purposes=("demo", "rollout")), log=log.info
        )
        return {"labelling_run": run, "value_key": value_key, "positive_fraction": report.positive_fraction}

    def _stage_train_policy(self, r: int) -> dict[str, Any]:
        import ray

        run = self.state.round_outputs(r)["labelling_run"]
        result = ray.get(self.policy_learner.train_round.remote(r, run))
        return {
            "policy_version": int(result["version"]),
            "policy_checkpoint": result["checkpoint"],
            "policy_final_loss": result["final_loss"],
            "policy_samples_per_s": result["samples_per_s"],
            "policy_data_wait_fraction": result["data_wait_fraction"],
        }

    def _stage_deploy(self, r: int) -> dict[str, Any]:
        outputs = self.state.round_outputs(r)
        self._deploy(outputs["policy_checkpoint"], f"v{outputs['policy_version']:06d}")
        return {"deployed": f"v{outputs['policy_version']:06d}"}

    def _stage_evaluate(self, r: int) -> dict[str, Any]:
        records = self._collect(r, "eval", self.config.loop.eval_episodes)
        return {"evaluated": len(records)}

    # -- helpers --------------------------------------------------------------------------------------------
    def _collect(self, r: int, purpose: str, target: int) -> list[Any]:
        with progress_bar(self.console, f"round {r} {purpose}", target) as advance:
            return collect(
                self._store(),
                self.actors,
                round_index=r,
                purpose=purpose,
                target=target,
                seed_base=self.config.loop.seed
                + 1_000_000 * r
                + {"demo": 0, "rollout": 0, "eval": 500_000}[purpose],
                max_attempts=self.config.loop.max_collect_attempts,
                before_attempt=self._redeploy,
                on_progress=advance,
            )

    def _deploy(self, checkpoint: str, version: str) -> None:
        import ray

        packed = ray.put(pack_checkpoint(checkpoint, version))
        self._deployed = (version, packed)
        # Stages run one at a time, so no arm is mid-episode here: load at once and fail the deploy if it breaks.
        ray.get([actor.set_policy.remote(packed, load_now=True) for actor in self.actors.values()])

    def _redeploy(self) -> None:
        """Give every arm the deployed policy again (a restarted actor comes back without one)."""
        import ray

        if self._deployed is not None:
            ray.get([actor.set_policy.remote(self._deployed[1]) for actor in self.actors.values()])

    def _store(self) -> ReplayStore:
        if self.store is None:
            self.store = ReplayStore.open(self.config.store_url)
        return self.store

    def _report_round(self, r: int) -> None:
        if not self.state.is_done(r, "evaluate"):
            return
        store = self._store()
        hz = self._control_hz
        outputs = self.state.round_outputs(r)
        trained_on = committed_episodes(store, r, outputs.get("purpose", "rollout"))
        collected = episode_metrics(trained_on, hz)
        evaluated = episode_metrics(committed_episodes(store, r, "eval"), hz)
        metrics = {f"collect/{k}": v for k, v in collected.items()}
        metrics |= {f"eval/{k}": v for k, v in evaluated.items()}
        metrics["labels/positive_fraction"] = outputs.get("positive_fraction", float("nan"))
        metrics |= value_metrics(store, trained_on, outputs.get("value_key"))
        metrics |= {f"time/{k}_s": v for k, v in self.state.stage_seconds.get(str(r), {}).items()}
        outputs["metrics"] = metrics
        self.state.save(self.run_dir)
        self.console.print(round_table(self.state))
        self.console.print(stage_table(self.state))
        if self.monitor is not None and self.monitor.enabled:
            import ray

            from improve.report import round_media

            media = round_media(store, r, outputs, self.run_dir / "media", fps=hz)
            self.monitor.log_round(r, metrics, **media)
            self.monitor.log_role("actor", r, self._per_arm_metrics(r, hz))
            self.monitor.log_role("value_learner", r, ray.get(self.value_learner.metrics.remote()))
            self.monitor.log_role(
                "policy_learner",
                r,
                {
                    "policy/final_loss": outputs.get("policy_final_loss", float("nan")),
                    "policy/version": float(outputs.get("policy_version", -1)),
                    "policy/samples_per_s": outputs.get("policy_samples_per_s", float("nan")),
                    "policy/data_wait_fraction": outputs.get("policy_data_wait_fraction", float("nan")),
                },
            )

    def _per_arm_metrics(self, r: int, hz: float) -> dict[str, float]:
        records = [
            rec
            for purpose in ("demo", "rollout", "eval")
            for rec in committed_episodes(self._store(), r, purpose)
        ]
        metrics: dict[str, float] = {}
        for arm in self.actors:
            for key, value in episode_metrics(
                [rec for rec in records if rec.meta.robot_id == arm], hz
            ).items():
                metrics[f"{arm}/{key}"] = value
        return metrics

    def _out_of_budget(self, started: float) -> bool:
        budget = self.config.loop.budget_hours
        return budget > 0 and (time.monotonic() - started) / 3600.0 >= budget

    # -- start-up -------------------------------------------------------------------------------------------
    def _load_or_start_state(self) -> RunState:
        fingerprint = config_fingerprint(self.config)
        state = RunState.load(self.run_dir)
        if state is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            state = RunState(run_name=self.run_dir.resolve().name, config_fingerprint=fingerprint)
            state.save(self.run_dir)
        elif state.config_fingerprint != fingerprint:
            raise SystemExit(
                f"vivarl: {self.run_dir} was started with a different task, value model or labelling config; "
                "resume it with the same settings, or choose a new run_dir"
            )
        return state

    def _preflight(self) -> None:
        """Everything that can be checked before an arm moves."""
        from improve.preflight import check_config

        check_config(self.config)

    def _start_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        cfg = self.config.ray
        if cfg.address:
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=True)
            return
        # A local Ray stands in for the lab cluster: it advertises every configured arm's resource itself, and
        # one logical CPU per arm and per learner, since the stages take turns rather than run all at once.
        resources = {robot.resource: 1.0 for robot in self.config.robots.values()}
        num_cpus = cfg.num_cpus or len(self.config.robots) + 2
        ray.init(num_cpus=num_cpus, resources=resources, include_dashboard=False, log_to_driver=False)

    def _start_workers(self) -> None:
        config = self.config
        settings = [
            ActorSettings(
                robot=robot,
                store_url=config.store_url,
                task=config.task.name,
                outcome_source=config.loop.outcome_source,
                outcome_timeout_s=config.loop.outcome_timeout_s,
                realtime=config.loop.realtime,
                device=config.ray.actor_device,
            )
            for robot in config.robots.values()
        ]
        self.actors = launch_robot_actors(settings, max_restarts=config.ray.actor_max_restarts)
        import ray

        # The first arm creates the store; learners open it after that.
        infos = ray.get([actor.info.remote() for actor in self.actors.values()])
        # Robot-hours (for successes per hour) are counted at the arms' own control rate.
        self._control_hz = min(info["control_hz"] for info in infos)
        self.value_learner = launch_value_learner(config.value_learner, config.valuemodel)
        # Ray reports an actor's constructor error at its first call; make that call now, so that a value model the
        # arms' robot cannot feed is refused before the arms record a round, not after.
        ray.get(self.value_learner.latest_version.remote())
        self.policy_learner = launch_policy_learner(config.policy_learner)
        # A restarted driver gives the arms what was last deployed, not a policy trained but never deployed.
        deployed_round = self.state.latest_round_with("deployed")
        if deployed_round is not None:
            outputs = self.state.round_outputs(deployed_round)
            self._deploy(outputs["policy_checkpoint"], outputs["deployed"])
        self.console.print(
            f"[bold]vivarl[/] run [cyan]{self.run_name}[/]: {len(self.actors)} arms "
            f"({', '.join(self.actors)}), store {config.store_url}"
            + (f", resuming after {', '.join(self.state.completed[-1:])}" if self.state.completed else "")
        )
