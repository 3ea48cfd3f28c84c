"""The round driver, the `vivarl` command and the `vivarl-study` command.

The study's entry points are exported lazily: importing a light module such as ``improve.run_state`` does not pull
in Hydra, the learners or the study.
"""

from __future__ import annotations

from typing import Any

_STUDY_EXPORTS = ("StudyConfig", "plan_runs", "run_study", "write_report")
__all__ = list(_STUDY_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _STUDY_EXPORTS:
        from improve import study

        return getattr(study, name)
    raise AttributeError(f"module 'improve' has no attribute {name!r}")
