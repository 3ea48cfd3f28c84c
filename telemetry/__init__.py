"""telemetry: the Weights & Biases runs of an improvement run, one per role, each opened in the role's own process.

``WandbConfig`` (mode offline/online/disabled, project, entity) and ``RunTelemetry`` (what a process needs to open
its role's run: the config, the run's name and directory, the role and, for arms, the arm's name) are plain
picklable dataclasses the driver hands to every actor; ``RoleRun`` is the open run (``log``, ``finish``), a no-op
when W&B is disabled. W&B is imported only when a run is opened. Depends on no other vivarl package.
"""

from telemetry.wandb_runs import MODES, ROLES, RoleRun, RunTelemetry, WandbConfig, init_kwargs

__all__ = ["MODES", "ROLES", "RoleRun", "RunTelemetry", "WandbConfig", "init_kwargs"]
