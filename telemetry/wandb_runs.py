"""One W&B run per role of an improvement run: see the package docstring."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def init_kwargs(
    config: WandbConfig, run_name: str, run_dir: str | Path, role: str, member: str = ""
) -> dict[str, Any]:
    """Arguments of ``wandb.init`` for one role of the run (``member``: which arm, for the actors); empty when W&B
    is disabled."""
    if role not in ROLES:
        raise ValueError(f"unknown W&B role {role!r}; roles are {ROLES}")
    if config.mode == "disabled":
        return {}
    wandb_dir = Path(run_dir).resolve()
    wandb_dir.mkdir(parents=True, exist_ok=True)
    name = f"{run_name}-{role}" + (f"-{member}" if member else "")
    kwargs: dict[str, Any] = {
        "project": config.project,
        "group": run_name,
        "job_type": role,
        "name": name,
        "mode": config.mode,
        "dir": str(wandb_dir),
        # A resumed run continues the same W&B run per role instead of starting a new one.
        "id": name.replace("/", "-")[:120],
        "resume": "allow",
    }
    if config.entity:
        kwargs["entity"] = config.entity
    return kwargs


@dataclass
class RunTelemetry:
    """What a role's process needs to open its own run; picklable, so the driver hands it to every actor."""

    wandb: WandbConfig
    run_name: str
    run_dir: str
    role: str
    member: str = ""

    def open(self, config: dict[str, Any] | None = None) -> RoleRun:
        return RoleRun(self, config)


class RoleRun:
    """One role's open W&B run; every call is a no-op when W&B is disabled (``wandb`` is then never imported).

    Steps are the role's own (a learner's optimisation step, an arm's episode count), so each role's series is a
    curve in its own units; ``round`` is logged beside them where a role knows it.
    """

    def __init__(self, telemetry: RunTelemetry | None, config: dict[str, Any] | None = None) -> None:
        self.run: Any = None
        if telemetry is None or telemetry.wandb.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        kwargs = init_kwargs(
            telemetry.wandb, telemetry.run_name, telemetry.run_dir, telemetry.role, telemetry.member
        )
        self.run = wandb.init(config=config or {}, reinit="create_new", **kwargs)

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None and metrics:
            self.run.log(metrics, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
