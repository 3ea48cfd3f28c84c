"""The policy learner as a Ray actor: one call per round, on a GPU when the cluster has one."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, replace
from typing import Any

from learners.policy_learner import PolicyLearner, PolicyLearnerConfig
from telemetry import RoleRun, RunTelemetry

log = logging.getLogger(__name__)


class PolicyLearnerActor:
    def __init__(self, config: PolicyLearnerConfig, telemetry: RunTelemetry | None = None) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        # The policy learner's own W&B run: loss and learning rate per logged step, each version published.
        self.wandb = RoleRun(telemetry, asdict(config))
        self.learner = PolicyLearner(config, log=log.info, on_metrics=self.wandb.log)

    def info(self) -> dict[str, Any]:
        """Where this learner runs: a restarted one has another pid."""
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def train_round(
        self, round_index: int, labelling_run: str | None, start_from: str | None = None
    ) -> dict[str, Any]:
        result = self.learner.train_round(round_index, labelling_run, start_from)
        return {
            "checkpoint": str(result.checkpoint),
            "version": result.version,
            "frames": result.frames,
            "final_loss": float(result.losses[-1]) if result.losses else float("nan"),
            "wall_time_s": result.wall_time_s,
            "samples_per_s": result.samples_per_s,
            "data_wait_fraction": result.data_wait_fraction,
        }


def launch_policy_learner(
    config: PolicyLearnerConfig,
    name: str | None = None,
    telemetry: RunTelemetry | None = None,
    max_restarts: int = 0,
) -> Any:
    """Start the actor; it takes one GPU and trains on it when the cluster has GPUs. A learner process that dies
    is restarted by Ray up to ``max_restarts`` times; the call it was answering fails and the caller asks again
    (a round's training then starts over)."""
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if has_gpu and config.device == "cpu":
        config = replace(config, device="cuda")
    actor_class = ray.remote(PolicyLearnerActor).options(
        num_cpus=1, num_gpus=1 if has_gpu else 0, name=name, max_restarts=max_restarts, max_task_retries=0
    )
    return actor_class.remote(config, telemetry)
