"""The value learner as a Ray actor, and its multi-GPU path through Ray Train's ``TorchTrainer``.

The round driver holds one actor per value learner (``launch_value_learner``) and calls, blocking on each:

    version = ray.get(actor.refit.remote(round))      # fit on all labelled data so far, publish v{version}
    n       = ray.get(actor.label.remote(version))    # write value columns for every committed episode
    latest  = ray.get(actor.latest_version.remote())

or ``start_continual`` / ``stop_continual`` to train beside the actors while episodes stream in. With
``distributed: ddp|fsdp`` a refit runs as a ``TorchTrainer`` of ``train_workers`` workers (one per GPU) that the
actor launches and waits for; the training loop is ``ValueLearner.refit`` with the loss wrapped by
``ray.train.torch.prepare_model`` and each rank sampling its own stream; rank 0 writes checkpoints and publishes,
and reports the published version folder as the Ray Train checkpoint. Ray is imported only in this module.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from learners.value_learner import ValueLearner, ValueLearnerConfig
from learners.value_quality import ValueFloorConfig
from telemetry import RoleRun, RunTelemetry
from valuemodel.checkpoint import version_dir
from valuemodel.config import ValueModelConfig

log = logging.getLogger(__name__)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: a ValueLearner whose loss module is DDP/FSDP-wrapped by ``prepare_model``."""
    import ray.train
    import ray.train.torch

    config = ValueLearnerConfig(**loop_config["learner"])
    config.device = str(ray.train.torch.get_device())
    strategy_kwargs = {"find_unused_parameters": True} if config.distributed == "ddp" else {}

    def wrap(module: Any) -> Any:
        return ray.train.torch.prepare_model(
            module, parallel_strategy=config.distributed, parallel_strategy_kwargs=strategy_kwargs
        )

    rank = ray.train.get_context().get_world_rank()
    learner = ValueLearner(
        config, ValueModelConfig.from_dict(loop_config["model"]), rank=rank, wrap_loss=wrap
    )
    # Rank 0 logs the refit's loss curve to W&B, as the single-process learner does (the ranks' losses agree
    # up to their shards of the batch).
    telemetry = loop_config.get("telemetry") if rank == 0 else None
    run = RoleRun(telemetry, {"learner": loop_config["learner"], "workers": config.train_workers})
    learner.on_metrics = run.log
    try:
        version = learner.refit(int(loop_config["round"]), bool(loop_config.get("up_to_round", False)))
    finally:
        run.finish()
    checkpoint = None
    if rank == 0:
        checkpoint = ray.train.Checkpoint.from_directory(str(version_dir(config.checkpoint_root, version)))
    ray.train.report({"version": version, **learner.metrics}, checkpoint=checkpoint)


def refit_with_torch_trainer(
    config: ValueLearnerConfig,
    model_config: ValueModelConfig,
    round_index: int,
    use_gpu: bool,
    up_to_round: bool = False,
    telemetry: RunTelemetry | None = None,
) -> int:
    """Run one refit as a Ray Train job of ``config.train_workers`` workers; returns the published version. With
    ``telemetry``, rank 0 logs the refit to its own W&B run (member ``refit-r<round>``) in the run's group."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"GPU": config.gpus_per_worker} if use_gpu else {"CPU": 1}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "learner": asdict(config),
            "model": model_config.to_dict(),
            "round": round_index,
            "up_to_round": up_to_round,
            "telemetry": None if telemetry is None else replace(telemetry, member=f"refit-r{round_index}"),
        },
        scaling_config=ScalingConfig(
            num_workers=config.train_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=f"value-refit-r{round_index}",
            storage_path=str((Path(config.checkpoint_root) / "ray_train").resolve()),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return int(result.metrics["version"])


class ValueLearnerActor:
    """What runs inside the actor. Training calls (refit, label, continual) are serialised by one lock;
    ``latest_version`` and ``metrics`` answer at any time (the actor runs with several threads)."""

    def __init__(
        self,
        config: dict[str, Any],
        model_config: dict[str, Any],
        use_gpu: bool = False,
        telemetry: RunTelemetry | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        self.config = ValueLearnerConfig(**config)
        self.model_config = ValueModelConfig.from_dict(model_config)
        self.use_gpu = use_gpu
        self.started_at = time.time()
        self.learner = ValueLearner(self.config, self.model_config)
        # The learner may have gone on from a backbone chosen before this process started (a restart).
        self.model_config = self.learner.model_config
        # The value learner's own W&B run: loss, learning rate and data wait per logged step, each version.
        self.telemetry = telemetry
        self.wandb = RoleRun(telemetry, {"learner": config, "model": model_config})
        self.learner.on_metrics = self.wandb.log
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._continual: threading.Thread | None = None
        self._continual_versions: list[int] = []
        self._continual_error: BaseException | None = None

    def refit(self, round_index: int, up_to_round: bool = False) -> int:
        with self._busy:
            if self.config.distributed != "none":
                return refit_with_torch_trainer(
                    self.config, self.model_config, round_index, self.use_gpu, up_to_round, self.telemetry
                )
            return self.learner.refit(round_index, up_to_round)

    def label(self, version: int | None = None, episode_filter: dict[str, Any] | None = None) -> int:
        """Label every committed episode, or those an ``EpisodeFilter.to_dict()`` accepts."""
        from replay import EpisodeFilter

        with self._busy:
            chosen = None if episode_filter is None else EpisodeFilter.from_dict(episode_filter)
            return self.learner.label(version, episode_filter=chosen)

    def latest_version(self) -> int | None:
        return self.learner.latest_version()

    def info(self) -> dict[str, Any]:
        """Where this learner runs (a restarted one has another pid) and what it has published."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "latest_version": self.learner.latest_version(),
        }

    def quality(self, version: int, floor: dict[str, Any], up_to_round: int | None = None) -> dict[str, Any]:
        with self._busy:
            return self.learner.quality(version, ValueFloorConfig(**floor), up_to_round).as_dict()

    def pretrain_backbone(self, config: dict[str, Any]) -> dict[str, float]:
        """Pretrain the video backbone on the store's recorded video (no labels) and refit from it from now on;
        an existing, complete output folder is reused, so a resumed round 0 does not pretrain twice."""
        from learners.backbone_pretrain import BackbonePretrainConfig, FrameLatents, pretrain_backbone

        with self._busy:
            pretrain = BackbonePretrainConfig(**config)
            done = Path(pretrain.out_dir) / "pretrain.json"
            latents: list[FrameLatents] = []
            report = (
                json.loads(done.read_text())
                if done.is_file()
                else pretrain_backbone(pretrain, latents.append)
            )
            self.use_backbone(pretrain.out_dir)
            primed = self.learner.prime_latent_cache(latents[0]) if latents else 0
            log.info("latent cache primed with %d frames from the backbone's pretraining", primed)
            return {k: float(v) for k, v in report.items() if isinstance(v, int | float)}

    def use_backbone(self, pretrained_dir: str) -> None:
        self.learner.use_backbone(pretrained_dir)
        self.model_config = self.learner.model_config

    def metrics(self) -> dict[str, float]:
        return dict(self.learner.metrics)

    def start_continual(self) -> None:
        if self._continual is not None and self._continual.is_alive():
            raise RuntimeError("continual value training is already running")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("the value learner is busy (refit or label in progress)")
        self._stop.clear()
        self._continual_versions, self._continual_error = [], None

        def run() -> None:
            try:
                self._continual_versions.extend(self.learner.run_continual(self._stop.is_set))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of stop_continual
                self._continual_error = exc
                log.exception("continual value training failed")
            finally:
                self._busy.release()

        self._continual = threading.Thread(target=run, name="value-continual", daemon=True)
        self._continual.start()

    def stop_continual(self, timeout_s: float = 600.0) -> list[int]:
        """Stop after the current step; returns the versions published since ``start_continual``."""
        if self._continual is None:
            return []
        self._stop.set()
        self._continual.join(timeout_s)
        if self._continual.is_alive():
            raise TimeoutError(f"continual value training did not stop within {timeout_s} s")
        self._continual = None
        if self._continual_error is not None:
            raise self._continual_error
        return list(self._continual_versions)


def launch_value_learner(
    config: ValueLearnerConfig,
    model_config: ValueModelConfig,
    name: str | None = None,
    telemetry: RunTelemetry | None = None,
    max_restarts: int = 0,
) -> Any:
    """Start the actor: with ``gpus_per_worker`` GPUs when the cluster has GPUs, on CPU otherwise. With
    ``distributed`` set, the actor itself is a light coordinator and the Ray Train workers take the GPUs.

    A learner process that dies is restarted by Ray up to ``max_restarts`` times; the call it was answering fails
    (it is not retried blindly) and the caller asks again: a refit resumes from its last training checkpoint."""
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    own_gpus = config.gpus_per_worker if has_gpu and config.distributed == "none" else 0
    actor_class = ray.remote(ValueLearnerActor).options(
        num_cpus=1,
        num_gpus=own_gpus,
        max_concurrency=4,
        name=name,
        max_restarts=max_restarts,
        max_task_retries=0,
    )
    return actor_class.remote(asdict(config), model_config.to_dict(), has_gpu, telemetry)
