"""The round driver's W&B run: one point per round (the round table's numbers, videos, value curves).

Every role logs its own run from its own process (``telemetry``): the value and policy learners their losses per
step, learning rate, data-wait share and published versions, each arm its episodes; all in one W&B group per run.
Offline by default (runs land in ``<run_dir>/wandb`` and upload later with ``wandb sync``), online with
``wandb.mode=online``, entirely off with ``wandb.mode=disabled``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from telemetry import ROLES, RoleRun, RunTelemetry, WandbConfig, init_kwargs

__all__ = ["ROLES", "RoundMonitor", "WandbConfig", "init_kwargs"]


class RoundMonitor:
    """The round driver's run: scalars per round, videos, value-curve plots and the advantage histogram."""

    def __init__(self, config: WandbConfig, run_name: str, run_dir: str | Path, config_dict: dict) -> None:
        self.config = config
        # Absolute: every role's process resolves it the same way (on another node, the same path there).
        self.telemetry = RunTelemetry(config, run_name, str(Path(run_dir).resolve()), "round_driver")
        self._role_run = RoleRun(self.telemetry, config_dict)

    @property
    def enabled(self) -> bool:
        return self._role_run.enabled

    @property
    def run(self) -> Any:
        return self._role_run.run

    def for_role(self, role: str, member: str = "") -> RunTelemetry:
        """What an actor of ``role`` needs to open its own run in this run's group."""
        return RunTelemetry(self.config, self.telemetry.run_name, self.telemetry.run_dir, role, member)

    def log_round(
        self,
        round_index: int,
        metrics: dict[str, float],
        *,
        video: Path | None = None,
        plots: dict[str, Path] | None = None,
        advantages: np.ndarray | None = None,
    ) -> None:
        if self.run is None:
            return
        import wandb

        payload: dict[str, Any] = {"round": round_index, **metrics}
        if video is not None and self.config.log_videos:
            payload["eval/video"] = wandb.Video(str(video), format="mp4")
        for name, path in (plots or {}).items():
            payload[name] = wandb.Image(str(path))
        if advantages is not None and advantages.size:
            payload["labels/advantage_histogram"] = wandb.Histogram(advantages)
        self.run.log(payload, step=round_index)

    def finish(self) -> None:
        self._role_run.finish()
