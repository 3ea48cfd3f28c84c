"""The round driver: the one place that wires arms, replay, learners and models together with Ray.

Each round runs named, timed stages (collect → refit value → label advantages → train policy → evaluate → deploy,
where a promotion gate decides whether the new policy replaces the deployed one),
blocking on the remote results it needs. A stage is marked done in ``run_state.json`` only once its effects are
durable, so ``vivarl`` with the same ``run_dir`` resumes at the first unfinished stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from actors.robot_actor import ActorSettings, launch_robot_actors
from actors.weights import pack_checkpoint
from checkpoints import version_dir, version_name
from improve.collection import (
    arm_utilisation,
    collect,
    committed_episodes,
    episode_metrics,
    root_cause_line,
    staleness,
)
from improve.config import VivarlConfig
from improve.evaluation import evaluation_seeds, paired_comparison, promote
from improve.monitor import RoundMonitor
from improve.report import evaluation_metrics, progress_bar, round_table, stage_table, stage_timer
from improve.run_state import STAGES, RunState
from improve.scheduler import ArmScheduler, PolicyRegistry
from learners.policy_actor import launch_policy_learner
from learners.policy_labels import label_store, looks_to_episode_end
from learners.value_actor import launch_value_learner
from replay import TRAINING_PURPOSES, EpisodeFilter, Outcome, ReplayStore
from robot_io.spec import RobotSpec

log = logging.getLogger(__name__)


def config_fingerprint(config: VivarlConfig) -> str:
    """What must not change between a run and its resumption (the arms and the loop's sizes may)."""
    keep = {k: v for k, v in asdict(config).items() if k in ("task", "valuemodel", "labelling")}
    # Rounds are compared on the evaluation seeds: other seeds after a resume would leave nothing to pair.
    keep["eval_seed_base"] = config.loop.eval_seed_base
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def answer_with_restarts(
    learner: Any,
    ask: Callable[[], Any],
    what: str,
    *,
    deadline_s: float,
    restarts: int,
    on_restart: Callable[[int, str], None] = lambda attempt, reason: None,
) -> Any:
    """``ray.get(ask())``, a call to ``learner``, within ``deadline_s`` (0: no limit). When the learner's process
    dies under the call, Ray restarts it (up to the actor's ``max_restarts``): ``on_restart(restart, reason)`` is
    told, the restarted learner's ``info()`` is awaited, and ``ask`` is called again, at most ``restarts`` times.
    Ray says the same (ActorUnavailableError) when a live learner was only unreachable for a moment and the call
    may have run, so every learner call must be safe to ask again: a refit resumes from its training checkpoint
    and returns the version it published for the round, labelling skips the episodes it has already labelled, a
    policy training returns the version published for the same round and request or starts over."""
    import ray

    timeout = deadline_s if deadline_s > 0 else None
    restarted = 0
    while True:
        ref = ask()
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref)
            raise RuntimeError(
                f"the {what} gave no answer within {deadline_s:g} s (loop.learner_deadline_s): its learner may be "
                "hung; look at its log under the run directory or with `ray logs`, then run the same command to "
                "resume at this stage (raise loop.learner_deadline_s if it is only slow)"
            ) from None
        except ray.exceptions.ActorUnavailableError as err:
            # The process died under the call (Ray restarts it) or is unreachable for now.
            reason = root_cause_line(err)
            if restarted == restarts:
                raise RuntimeError(
                    f"the learner died during the {what} ({reason}) after {restarts} restarts "
                    "(ray.learner_max_restarts): look at its log under the run directory or with `ray logs` (out "
                    "of memory?), then run the same command to resume at this stage"
                ) from err
            restarted += 1
            on_restart(restarted, reason)
            _await_restart(learner, what, timeout)
        except ray.exceptions.ActorDiedError as err:
            raise RuntimeError(
                f"the learner died during the {what} and Ray will not restart it ({root_cause_line(err)}): look at "
                "its log under the run directory or with `ray logs`, then run the same command to resume at this "
                "stage"
            ) from err


def _await_restart(learner: Any, what: str, timeout: float | None) -> None:
    """Until the restarted learner answers ``info()``: while Ray restarts an actor, calls to it fail at once."""
    import ray

    until = None if timeout is None else time.monotonic() + timeout
    while until is None or time.monotonic() < until:
        try:
            ray.get(
                learner.info.remote(), timeout=None if until is None else max(until - time.monotonic(), 0)
            )
            return
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.5)
        except ray.exceptions.GetTimeoutError:
            break
        except ray.exceptions.ActorDiedError as err:
            raise RuntimeError(
                f"the learner that died during the {what} did not come back ({root_cause_line(err)}): look at its "
                "log under the run directory or with `ray logs`, then run the same command to resume at this stage"
            ) from err
    raise RuntimeError(
        f"the learner that died during the {what} was not back within {timeout:g} s (loop.learner_deadline_s): "
        "look at `ray status` (a node gone?), then run the same command to resume at this stage"
    )


def _console() -> Console:
    console = Console()
    # A night's log often goes to a file, where rich would assume 80 columns and fold the round table.
    return console if console.is_terminal else Console(width=max(console.width, 120))


class RoundDriver:
    def __init__(self, config: VivarlConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or _console()
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
        # Arms set aside during the stage running now: arm -> "<purpose>: <reason>".
        self._set_aside: dict[str, str] = {}
        # Every policy version published to the arms, and which one is deployed.
        self._registry = PolicyRegistry()
        # loop.mode=continual: keeps the arms in episodes through every stage from round 1 on.
        self._scheduler: ArmScheduler | None = None
        # Learner processes that died during the stage running now and were asked again.
        self._learner_restarts = 0

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> RunState:
        self._preflight()
        self._start_ray()
        logged_config = asdict(self.config)
        if logged_config["console"]["token"]:
            logged_config["console"]["token"] = "<set>"  # the console's token never goes to W&B
        self.monitor = RoundMonitor(self.config.wandb, self.run_name, self.run_dir, logged_config)
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
                    self._set_aside, self._learner_restarts = {}, 0
                    self._keep_arms_busy(round_index)
                    self.state.round_outputs(round_index).setdefault("started_at", time.time())
                    with stage_timer(self.console, round_index, stage) as timer:
                        outputs = getattr(self, f"_stage_{stage}")(round_index)
                    if stage == "deploy":
                        outputs["ended_at"] = time.time()
                    if self._learner_restarts:
                        previous = self.state.round_outputs(round_index).get("learner_restarts", 0)
                        outputs["learner_restarts"] = previous + self._learner_restarts
                    if self._set_aside:
                        # Which arm sat out which stage, and why: the round table and W&B show it.
                        previous = self.state.round_outputs(round_index).get("arms_set_aside", {})
                        outputs["arms_set_aside"] = {**previous, **self._set_aside}
                    self.state.mark_done(round_index, stage, timer.seconds, **outputs)
                    self.state.save(self.run_dir)
                self._report_round(round_index)
        finally:
            self._stop_scheduler()
            if self.monitor is not None:
                self.monitor.finish()
        return self.state

    # -- the arms while the learners work ---------------------------------------------------------------------
    def _keep_arms_busy(self, r: int) -> None:
        """loop.mode=continual: from round 1 on (once a policy is deployed) the arms stay in episodes through
        every stage: rollouts with the deployed policy, picked up at each episode boundary, and the candidate's
        evaluation seeds when it needs scoring. In the pipeline mode the arms wait while the learners work."""
        if self.config.loop.mode != "continual" or self._scheduler is not None:
            return
        if r < 1 or self._registry.deployed() is None:
            return
        loop = self.config.loop
        rollout_round: int | None = r
        if self.state.is_done(r, "collect"):
            rollout_round = r + 1 if r < loop.rounds else None
        self._scheduler = ArmScheduler(
            ReplayStore.open(self.config.store_url),
            self.actors,
            self._registry,
            seed_base=loop.training_seed_base,
            rollout_round=rollout_round,
            last_round=loop.rounds,
            rollout_limit=loop.rollouts_ahead,
            episode_deadline_s=loop.episode_deadline_s,
            max_arm_failures=loop.arm_failures_to_set_aside,
            on_set_aside=self._arm_left_scheduler,
        ).start()
        rollouts = "no more rollouts (the last round's are in)"
        if rollout_round is not None:
            rollouts = f"round {rollout_round}'s rollouts with {self._registry.deployed().version}"
        self.console.print(
            f"arms in episodes from now on (loop.mode=continual): {rollouts}, evaluations in between"
        )

    def _arm_left_scheduler(self, arm: str, reason: str) -> None:
        self.console.print(f"[red]arm {arm} set aside until the next stage: {reason}")
        self._set_aside.setdefault(arm, reason)

    def _stop_scheduler(self) -> None:
        if self._scheduler is None:
            return
        scheduler, self._scheduler = self._scheduler, None
        scheduler.stop()
        self.console.print(f"arms stopped: {scheduler.episodes} episodes through the scheduler")

    # -- stages ---------------------------------------------------------------------------------------------
    def _stage_collect(self, r: int) -> dict[str, Any]:
        purpose, target = (
            ("demo", self.config.loop.demo_episodes)
            if r == 0
            else ("rollout", self.config.loop.episodes_per_round)
        )
        before = self._send_deployed if purpose == "rollout" else None
        if purpose == "rollout":
            self._send_value_model(r)
        if purpose == "rollout" and self._scheduler is not None:
            # The arms have been collecting this round's rollouts since the last round's collect ended, with the
            # policy deployed then; the round ends its collection once it has its share run by the newest one.
            version = self._registry.deployed().version
            records = self._scheduler.collect_rollouts(r, version, target)
            with_deployed = sum(rec.meta.policy_version == version for rec in records)
            self.console.print(
                f"round {r}'s rollouts: {len(records)}, {with_deployed} of them with {version}; the arms go on "
                f"with round {r + 1}'s"
            )
            return {"collected": len(records), "purpose": purpose, "collected_with_deployed": with_deployed}
        records = self._collect(r, purpose, target, before_attempt=before)
        return {"collected": len(records), "purpose": purpose}

    def _stage_refit_value(self, r: int) -> dict[str, Any]:
        """Refit, judge the new version on held-out episodes, and write its values for the training episodes. A
        version below the quality floor is published (for inspection) but not used: the round labels by outcome.
        An older version that passed is no fallback: trained on less and older data, its labels agreed with the
        ground truth's less than the newest version's in every round of a study run (RESULTS.md)."""
        if not self.config.loop.use_learned_value:
            return {"value_version": None, "value_used": None}
        outputs: dict[str, Any] = {}
        if r == 0 and self._needs_backbone():
            outputs["backbone_dir"] = str(self.run_dir / "backbone")
            outputs["backbone"] = self._learner_answer(
                self.value_learner,
                lambda: self.value_learner.pretrain_backbone.remote(self._backbone_config()),
                "backbone pretraining",
            )
        version = int(
            self._learner_answer(
                self.value_learner,
                lambda: self.value_learner.refit.remote(r, up_to_round=True),
                "value refit",
            )
        )
        # Values are written for the training episodes (which labelling reads) and, by the quality check, for
        # the held-out ones it judges on; the other evaluation episodes are never labelled.
        training = self._training_episodes(r).to_dict()
        quality = self._learner_answer(
            self.value_learner,
            lambda: self.value_learner.quality.remote(version, asdict(self.config.loop.value_floor), r),
            "value quality check",
        )
        used = version if quality["passed"] else None
        if used is not None:
            self._learner_answer(
                self.value_learner, lambda: self.value_learner.label.remote(used, training), "value labelling"
            )
        if not quality["passed"]:
            self.console.print(
                f"[yellow]value v{version} fails the held-out quality floor ({quality['reason']}): "
                "labelling by outcome"
            )
        return {**outputs, "value_version": version, "value_quality": quality, "value_used": used}

    def _stage_label_advantages(self, r: int) -> dict[str, Any]:
        outputs = self.state.round_outputs(r)
        labelling = self.config.labelling
        if labelling.horizon_s is not None:
            labelling = replace(labelling, horizon=max(1, round(labelling.horizon_s * self._control_hz)))
        time_limit = self.config.value_learner.time_limit
        if time_limit and self.config.task.name not in labelling.max_episode_length:
            # The value targets' L_max: rewards on another scale than the values would tilt every advantage.
            limits = {**labelling.max_episode_length, self.config.task.name: time_limit}
            labelling = replace(labelling, max_episode_length=limits)
        value_key = None
        if not self.config.loop.use_learned_value:
            source = "progress"
        elif outputs.get("value_used") is None:
            source, labelling = "outcome", replace(labelling, outcome_only=True)
        else:
            value_key = self.config.value_learner.label_key.format(
                version=outputs["value_used"], kind=self.config.valuemodel.kind
            )
            source = value_key
        run = f"round{r:03d}-{source}"
        labelling = replace(labelling, run=run, value_key=value_key)
        # N in steps, or "episode": a learned value's advantages look to the end of the episode (A = G_t - V_t).
        horizon = "episode" if looks_to_episode_end(labelling) else labelling.horizon
        # Evaluation episodes are measurements of a policy, not training data.
        report = label_store(self._store(), labelling, self._training_episodes(r), log=log.info)
        if report.unlabelled:
            self.console.print(
                f"[yellow]labelling left out {report.unlabelled} unlabelled episodes: give their outcomes on the "
                "arms' consoles; a later round's labelling includes them"
            )
        return {
            "labelling_run": run,
            "labelled_at": time.time(),
            "value_key": value_key,
            "advantage_horizon": horizon,
            "positive_fraction": report.positive_fraction,
            "unlabelled_left_out": report.unlabelled,
        }

    def _stage_train_policy(self, r: int) -> dict[str, Any]:
        if r > 0 and not self.config.loop.retrain_policy:
            first = self.state.round_outputs(0)
            keep = ("policy_version", "policy_checkpoint", "policy_final_loss")
            return {**{k: first[k] for k in keep}, "retrained": False}
        run = self.state.round_outputs(r)["labelling_run"]
        previous = self.state.latest_round_with("deployed", before=r)
        start_from = None
        if self.config.loop.policy_start == "deployed" and previous is not None:
            start_from = self.state.round_outputs(previous)["deployed_checkpoint"]
        result = self._learner_answer(
            self.policy_learner,
            lambda: self.policy_learner.train_round.remote(r, run, start_from),
            "policy training",
        )
        return {
            "policy_version": int(result["version"]),
            "policy_checkpoint": result["checkpoint"],
            "policy_final_loss": result["final_loss"],
            "policy_samples_per_s": result["samples_per_s"],
            "policy_data_wait_fraction": result["data_wait_fraction"],
            "policy_started_from": start_from,
            "retrained": True,
            "trained_at": time.time(),
        }

    def _stage_evaluate(self, r: int) -> dict[str, Any]:
        """The round's new policy on the fixed evaluation seeds, before the gate decides whether to deploy it."""
        outputs = self.state.round_outputs(r)
        version = version_name(outputs["policy_version"])
        candidate = self._registry.publish(version, self._pack(outputs["policy_checkpoint"], version)).packed
        seeds = evaluation_seeds(self.config.loop.eval_seed_base, self.config.loop.eval_episodes)
        if self._scheduler is not None:
            records = self._scheduler.evaluate(r, version, seeds)
        else:
            records = self._collect(
                r, "eval", len(seeds), seeds=seeds, before_attempt=lambda arms: self._send(candidate, arms)
            )
        # An episode the operator left unlabelled is no failure: it is left out, and paired tests use the seeds
        # both policies have outcomes for.
        outcomes = {
            str(rec.meta.seed): int(rec.meta.outcome is Outcome.SUCCESS)
            for rec in records
            if rec.meta.outcome is not Outcome.UNLABELLED
        }
        return {
            "evaluated": len(records),
            "eval_outcomes": outcomes,
            "eval_unlabelled": len(records) - len(outcomes),
        }

    def _stage_deploy(self, r: int) -> dict[str, Any]:
        """The promotion gate: deploy the new policy unless, on the same seeds, it is significantly worse than the
        deployed one. A rejected version stays on disk; the arms keep the incumbent."""
        outputs = self.state.round_outputs(r)
        candidate = version_name(outputs["policy_version"])
        previous = self.state.latest_round_with("deployed", before=r)
        comparison = None
        if previous is not None:
            incumbent = self.state.round_outputs(previous)
            reference = self.state.round_outputs(incumbent["deployed_eval_round"])["eval_outcomes"]
            comparison = paired_comparison(reference, outputs["eval_outcomes"])
        promoted = promote(self.config.loop.gate, comparison)
        if promoted:
            deployed = {
                "deployed": candidate,
                "deployed_checkpoint": outputs["policy_checkpoint"],
                "deployed_eval_round": r,
            }
        else:
            deployed = {k: incumbent[k] for k in ("deployed", "deployed_checkpoint", "deployed_eval_round")}
            self.console.print(
                f"[yellow]gate: {candidate} is worse than {deployed['deployed']} on the evaluation seeds "
                f"({comparison.candidate_rate:.0%} vs {comparison.reference_rate:.0%}, p {comparison.p_worse:.3f}): "
                f"kept {deployed['deployed']}"
            )
        self._deploy(deployed["deployed_checkpoint"], deployed["deployed"])
        gate = {
            "promoted": promoted,
            "candidate": candidate,
            "incumbent": None if previous is None else incumbent["deployed"],
            "rule": self.config.loop.gate.rule,
            **({} if comparison is None else comparison.as_dict()),
        }
        return {**deployed, "gate": gate, "deployed_at": time.time()}

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _training_episodes(r: int) -> EpisodeFilter:
        """Round r's training data: demonstrations and rollouts of rounds 0-r (evaluation episodes are measurements
        of a policy, not training data; rollouts collected ahead for round r+1 wait for their round)."""
        return EpisodeFilter(purposes=TRAINING_PURPOSES, rounds=tuple(range(r + 1)))

    def _collect(
        self,
        r: int,
        purpose: str,
        target: int,
        *,
        seeds: list[int] | None = None,
        before_attempt: Callable[[list[str]], None] | None = None,
    ) -> list[Any]:
        def set_aside(arm: str, reason: str) -> None:
            self.console.print(f"[red]arm {arm} set aside for round {r}'s {purpose}: {reason}")
            self._set_aside.setdefault(arm, f"{purpose}: {reason}")

        with progress_bar(self.console, f"round {r} {purpose}", target) as advance:
            return collect(
                self._store(),
                self.actors,
                round_index=r,
                purpose=purpose,
                target=target,
                seed_base=self.config.loop.training_seed_base(r),
                seeds=seeds,
                max_attempts=self.config.loop.max_collect_attempts,
                before_attempt=before_attempt or (lambda arms: None),
                on_progress=advance,
                max_arm_failures=self.config.loop.arm_failures_to_set_aside,
                on_set_aside=set_aside,
                episode_deadline_s=self.config.loop.episode_deadline_s,
            )

    def _pack(self, checkpoint: str, version: str) -> Any:
        import ray

        return ray.put(pack_checkpoint(checkpoint, version))

    def _send(self, packed: Any, arms: list[str] | None = None) -> None:
        """Give these arms (every arm by default; an arm set aside gets nothing) these weights now (stages run one at
        a time, so no arm is mid-episode); a checkpoint that cannot be loaded fails here, not in the next episode."""
        names = list(self.actors) if arms is None else arms
        calls = {name: self.actors[name].set_policy.remote(packed, load_now=True) for name in names}
        self._arm_answers(calls, "loading a policy")

    def _deploy(self, checkpoint: str, version: str) -> None:
        """Publish (a candidate evaluated this run already is) and deploy: arms that the scheduler keeps in episodes
        pick it up at their next episode boundary; idle arms load it now."""
        try:
            packed = self._registry.get(version).packed
        except KeyError:
            packed = self._registry.publish(version, self._pack(checkpoint, version)).packed
        self._registry.deploy(version)
        self._deployed = (version, packed)
        if self._scheduler is None:
            self._send(packed)

    def _send_value_model(self, r: int) -> None:
        """Give the arms' consoles the value version the last round labelled with, to score episodes live."""
        import ray

        if not self.config.console.is_enabled(self.config.loop.outcome_source):
            return
        used = self.state.round_outputs(r - 1).get("value_used")
        if used is None:
            return
        folder = version_dir(self.config.value_learner.checkpoint_root, used)
        packed = ray.put(pack_checkpoint(folder, f"value-v{used}"))
        calls = {name: actor.set_value_model.remote(packed) for name, actor in self.actors.items()}
        self._arm_answers(calls, "loading the live value model")

    def _send_deployed(self, arms: list[str] | None = None) -> None:
        """Give the arms the deployed policy again (evaluation loaded another; a restarted actor has none)."""
        if self._deployed is not None:
            self._send(self._deployed[1], arms)

    def _needs_backbone(self) -> bool:
        model = self.config.valuemodel
        return (
            self.config.loop.backbone.enabled and model.kind in ("viva", "wvm") and not model.pretrained_dir
        )

    def _backbone_config(self) -> dict[str, Any]:
        model, backbone = self.config.valuemodel, self.config.loop.backbone
        return {
            "store_url": self.config.store_url,
            "out_dir": str(self.run_dir / "backbone"),
            "size": model.size,
            "cameras": list(model.cameras),
            "image_height": model.image_height,
            "image_width": model.image_width,
            "vae_steps": backbone.vae_steps,
            "video_steps": backbone.video_steps,
            "transformer_overrides": dict(backbone.transformer_overrides),
            "seed": self.config.value_learner.seed,
        }

    def _arm_answers(self, calls: dict[str, Any], what: str, deadline: float | None = None) -> list[Any]:
        """The arms' answers, in order, within ``deadline`` (``loop.arm_call_deadline_s`` by default): an arm that
        does not answer stops the run naming it (an episode batch has its own, ``loop.episode_deadline_s``)."""
        import ray

        deadline = self.config.loop.arm_call_deadline_s if deadline is None else deadline
        ready, waiting = ray.wait(
            list(calls.values()), num_returns=len(calls), timeout=deadline if deadline > 0 else None
        )
        if waiting:
            silent = sorted(name for name, ref in calls.items() if ref in waiting)
            for ref in waiting:
                ray.cancel(ref)
            raise RuntimeError(
                f"arm(s) {', '.join(silent)} gave no answer within {deadline:g} s while "
                f"{what}: check the arm's node and its actor's log (`ray logs`), then run the same command to "
                "resume (raise loop.arm_call_deadline_s, or loop.arm_startup_deadline_s at start-up, if it is "
                "only slow)"
            )
        return ray.get(list(calls.values()))

    def _learner_answer(self, learner: Any, ask: Callable[[], Any], what: str) -> Any:
        """The answer to ``ask()`` (a remote call to ``learner``) within ``loop.learner_deadline_s``; a learner
        that died meanwhile is restarted by Ray and asked again, while the arms go on (loop.mode=continual)."""

        def restarted(attempt: int, reason: str) -> None:
            self.console.print(
                f"[yellow]the learner died during the {what} ({reason}): Ray restarts it; asking again "
                f"(try {attempt + 1} of {self.config.ray.learner_max_restarts + 1})"
            )
            self._learner_restarts += 1

        return answer_with_restarts(
            learner,
            ask,
            what,
            deadline_s=self.config.loop.learner_deadline_s,
            restarts=self.config.ray.learner_max_restarts,
            on_restart=restarted,
        )

    def _store(self) -> ReplayStore:
        if self.store is None:
            self.store = ReplayStore.open(self.config.store_url)
        return self.store

    def _report_round(self, r: int) -> None:
        if not self.state.is_done(r, "deploy"):
            return
        store = self._store()
        hz = self._control_hz
        outputs = self.state.round_outputs(r)
        trained_on = committed_episodes(store, r, outputs.get("purpose", "rollout"))
        metrics = {f"collect/{k}": v for k, v in episode_metrics(trained_on, hz).items()}
        metrics |= {
            f"eval/{k}": v for k, v in episode_metrics(committed_episodes(store, r, "eval"), hz).items()
        }
        metrics |= evaluation_metrics(self.state, r)
        metrics["labels/positive_fraction"] = outputs.get("positive_fraction", float("nan"))
        metrics["arms/set_aside"] = float(len(outputs.get("arms_set_aside", {})))
        metrics["learners/restarts"] = float(outputs.get("learner_restarts", 0))
        quality = outputs.get("value_quality") or {}
        metrics |= {f"value/{k}": float(v) for k, v in quality.items() if isinstance(v, int | float)}
        metrics |= {f"time/{k}_s": v for k, v in self.state.stage_seconds.get(str(r), {}).items()}
        records = list(store.records().values())
        utilisation = arm_utilisation(records, sorted(self.config.robots), self._window(r, records))
        metrics |= {f"arms/utilisation_{arm}": share for arm, share in utilisation.items()}
        metrics |= {f"staleness/{k}": v for k, v in staleness(records, self.state, r).items()}
        outputs["metrics"] = metrics
        # The policy versions the round's training episodes ran: in continual mode a round's rollouts start
        # during the round before, with the policy deployed then, so its collect/* numbers describe a mix of
        # the two deployed versions, not the one the table shows as deployed after the round.
        outputs["collected_with"] = sorted({rec.meta.policy_version for rec in trained_on})
        self.state.save(self.run_dir)
        self.console.print(round_table(self.state))
        self.console.print(stage_table(self.state))
        if self.config.loop.mode == "continual" and r > 0:
            self.console.print(
                f"round {r}'s rollouts (interv rate) ran policy {', '.join(outputs['collected_with'])}"
            )
        if self.monitor is not None and self.monitor.enabled:
            from improve.report import round_media

            media = round_media(
                store,
                r,
                outputs,
                self.run_dir / "media",
                fps=hz,
                value_key_format=self.config.value_learner.label_key.replace(
                    "{kind}", self.config.valuemodel.kind
                ),
                holdout_fraction=self.config.value_learner.holdout_fraction,
            )
            # Per round here; the learners and the arms log their own step series in their own runs.
            per_round = {
                **self._per_arm_metrics(r, hz),
                "policy/final_loss": outputs.get("policy_final_loss", float("nan")),
                "policy/version": float(outputs.get("policy_version", -1)),
            }
            self.monitor.log_round(r, {**metrics, **per_round}, **media)

    def _window(self, r: int, records: list[Any]) -> tuple[float, float]:
        """Round r's wall-clock span (epoch seconds): from its first stage's start to its deploy's end. A run
        from before the span was recorded: its first episode's start (of ``records``, the store's) plus the
        stages' time."""
        outputs = self.state.round_outputs(r)
        if "started_at" in outputs and "ended_at" in outputs:
            return outputs["started_at"], outputs["ended_at"]
        starts = [rec.meta.start_time for rec in records if rec.meta.round == r]
        start = min(starts, default=0.0)
        return start, start + sum(self.state.stage_seconds.get(str(r), {}).values())

    def _per_arm_metrics(self, r: int, hz: float) -> dict[str, float]:
        records = [
            rec
            for purpose in ("demo", "rollout", "eval")
            for rec in committed_episodes(self._store(), r, purpose)
        ]
        metrics: dict[str, float] = {}
        set_aside = self.state.round_outputs(r).get("arms_set_aside", {})
        for arm in self.actors:
            metrics[f"{arm}/set_aside"] = float(arm in set_aside)
            for key, value in episode_metrics(
                [rec for rec in records if rec.meta.robot_id == arm], hz
            ).items():
                metrics[f"{arm}/{key}"] = value
        return metrics

    def _telemetry(self, role: str, member: str = "") -> Any:
        """What a role's actor needs to open its own W&B run in this run's group (None: W&B disabled)."""
        if self.monitor is None or not self.monitor.enabled:
            return None
        return self.monitor.for_role(role, member)

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
                f"vivarl: {self.run_dir} was started with a different task, value model, labelling config or "
                "loop.eval_seed_base; "
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
                device=config.ray.actor_device,
                inference=config.inference,
                console=config.console,
                live_value=config.live_value,
                telemetry=self._telemetry("actor", robot.name),
            )
            for robot in config.robots.values()
        ]
        self.actors = launch_robot_actors(settings, max_restarts=config.ray.actor_max_restarts)

        # The first arm creates the store; learners open it after that.
        infos = self._arm_answers(
            {name: actor.info.remote() for name, actor in self.actors.items()},
            "starting up",
            self.config.loop.arm_startup_deadline_s,
        )
        for name, info in zip(self.actors, infos, strict=True):
            if info.get("console_url"):
                self.console.print(
                    f"operator console for arm [cyan]{name}[/]: {info['console_url']} (on its node)"
                )
        # Robot-hours (for successes per hour) are counted at the arms' own control rate.
        self._control_hz = min(info["control_hz"] for info in infos)
        # The arms' spec fills in what the model configs leave to the arm; nothing has moved yet.
        from improve.preflight import fit_models_to_arm

        self.config = config = fit_models_to_arm(config, RobotSpec.from_dict(infos[0]["spec"]))
        self.value_learner = launch_value_learner(
            config.value_learner,
            config.valuemodel,
            telemetry=self._telemetry("value_learner"),
            max_restarts=config.ray.learner_max_restarts,
        )
        # Ray reports an actor's constructor error at its first call; make that call now, so that a value model the
        # arms' robot cannot feed is refused before the arms record a round, not after.
        self._learner_answer(
            self.value_learner, lambda: self.value_learner.latest_version.remote(), "value learner's start-up"
        )
        self.policy_learner = launch_policy_learner(
            config.policy_learner,
            telemetry=self._telemetry("policy_learner"),
            max_restarts=config.ray.learner_max_restarts,
        )
        # A restarted driver gives the arms what was last deployed, not a policy trained but never deployed.
        deployed_round = self.state.latest_round_with("deployed")
        if deployed_round is not None:
            outputs = self.state.round_outputs(deployed_round)
            self._deploy(outputs["deployed_checkpoint"], outputs["deployed"])
        # The value learner keeps its round-0 backbone beside its versions (a restarted learner reads it back);
        # a run directory from before it did so has only the run state's record of it.
        backbone = self.state.round_outputs(0).get("backbone_dir")
        if backbone and self.state.is_done(0, "refit_value"):
            self._learner_answer(
                self.value_learner,
                lambda: self.value_learner.use_backbone.remote(backbone),
                "value learner's backbone load",
            )
        self.console.print(
            f"[bold]vivarl[/] run [cyan]{self.run_name}[/]: {len(self.actors)} arms "
            f"({', '.join(self.actors)}), store {config.store_url}"
            + (f", resuming after {', '.join(self.state.completed[-1:])}" if self.state.completed else "")
        )
