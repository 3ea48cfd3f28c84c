"""The persisted state of an improvement run: which (round, stage) pairs are done, and what each produced.

Every stage is idempotent and is marked complete only after its effects are durable (episodes committed,
checkpoints published), so resuming re-enters the first stage not marked complete and nothing is done twice.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# A new policy is evaluated before it is deployed: the promotion gate in "deploy" compares it with the incumbent.
STAGES = ("collect", "refit_value", "label_advantages", "train_policy", "evaluate", "deploy")
STATE_FILE = "run_state.json"


class RunStateError(RuntimeError):
    pass


@dataclass
class RunState:
    run_name: str
    config_fingerprint: str
    started_at: float = field(default_factory=time.time)
    # "round:stage" entries in completion order.
    completed: list[str] = field(default_factory=list)
    # What stages produced, by round: value version, labelling run, policy version and path, metrics.
    rounds: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def is_done(self, round_index: int, stage: str) -> bool:
        return f"{round_index}:{stage}" in self.completed

    def round_outputs(self, round_index: int) -> dict[str, Any]:
        return self.rounds.setdefault(str(round_index), {})

    def mark_done(self, round_index: int, stage: str, seconds: float, **outputs: Any) -> None:
        if stage not in STAGES:
            raise RunStateError(f"unknown stage {stage!r}; stages are {STAGES}")
        self.round_outputs(round_index).update(outputs)
        self.stage_seconds.setdefault(str(round_index), {})[stage] = seconds
        key = f"{round_index}:{stage}"
        if key not in self.completed:
            self.completed.append(key)

    def rounds_completed(self) -> int:
        return sum(1 for key in self.completed if key.endswith(":deploy"))

    def latest_round_with(self, name: str, before: int | None = None) -> int | None:
        """The newest round (before round ``before``, if given) whose outputs include ``name``."""
        rounds = [
            int(r)
            for r, outputs in self.rounds.items()
            if outputs.get(name) is not None and (before is None or int(r) < before)
        ]
        return max(rounds) if rounds else None

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, run_dir: str | Path) -> None:
        path = Path(run_dir) / STATE_FILE
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunState | None:
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise RunStateError(
                f"{path} is not a vivarl run state ({exc}); move it away to start afresh"
            ) from exc
