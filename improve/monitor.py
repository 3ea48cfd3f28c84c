"""Weights & Biases for an improvement run: one group per run, one W&B run per role (job type).

Offline by default (runs land in ``<run_dir>/wandb`` and upload later with ``wandb sync``), online when the user
sets ``wandb.mode=online``, and entirely off with ``wandb.mode=disabled``. The driver holds one run per role
(round driver, actor, value learner, policy learner) and logs what each role reported back to it, so the arms'
and learners' processes need no W&B connection of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("offline", "online", "disabled")
ROLES = ("round_driver", "actor", "value_learner", "policy_learner")


@dataclass
class WandbConfig:
    # offline (default; `wandb sync <run_dir>/wandb/offline-run-*` uploads later), online, or disabled.
    mode: str = "offline"
    project: str = "vivarl"
    # W&B entity (team or user); empty uses the logged-in default.
    entity: str = ""
    # Log one evaluation episode per round as a video.
    log_videos: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"wandb.mode must be one of {MODES}, got {self.mode!r}")


def init_kwargs(config: WandbConfig, run_name: str, run_dir: str | Path, role: str) -> dict[str, Any]:
    """Arguments of ``wandb.init`` for one role of the run; empty when W&B is disabled."""
    if role not in ROLES:
        raise ValueError(f"unknown W&B role {role!r}; roles are {ROLES}")
    if config.mode == "disabled":
        return {}
    wandb_dir = Path(run_dir).resolve()
    wandb_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "project": config.project,
        "group": run_name,
        "job_type": role,
        "name": f"{run_name}-{role}",
        "mode": config.mode,
        "dir": str(wandb_dir),
        # A resumed run continues the same W&B run per role instead of starting a new one.
        "id": f"{run_name}-{role}".replace("/", "-")[:120],
        "resume": "allow",
    }
    if config.entity:
        kwargs["entity"] = config.entity
    return kwargs


class RoundMonitor:
    """Scalars per round, videos, value-curve plots and the advantage histogram, one W&B run per role."""

    def __init__(self, config: WandbConfig, run_name: str, run_dir: str | Path, config_dict: dict) -> None:
        self.config = config
        self.runs: dict[str, Any] = {}
        if config.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        for role in ROLES:
            kwargs = init_kwargs(config, run_name, run_dir, role)
            self.runs[role] = wandb.init(config=config_dict, reinit="create_new", **kwargs)

    @property
    def enabled(self) -> bool:
        return bool(self.runs)

    @property
    def run(self) -> Any:
        return self.runs.get("round_driver")

    def log_role(self, role: str, round_index: int, metrics: dict[str, float]) -> None:
        """Metrics a role reported (an arm's episodes, a learner's losses) into that role's W&B run."""
        if role in self.runs and metrics:
            self.runs[role].log({"round": round_index, **metrics}, step=round_index)

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
        for run in self.runs.values():
            run.finish()
        self.runs = {}
