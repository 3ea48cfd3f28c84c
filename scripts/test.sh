#!/usr/bin/env bash
# Set up (if needed) and run every check: lint and formatting, the fast suite, then the slow end-to-end tests.
# Extra arguments go to both pytest runs (e.g. scripts/test.sh -x -k bridge).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}" WANDB_MODE="${WANDB_MODE:-offline}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest "$@"
# pytest exits 5 when a marker selects nothing; that is not a failure of the slow suite.
status=0
.venv/bin/pytest -m slow "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
