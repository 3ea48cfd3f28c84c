#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: local, simulated arms, tiny models, offline W&B.
# Any argument is a Hydra override, e.g. scripts/run.sh demo.num_episodes=8 robot.sim_box.image_height=96
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}" WANDB_MODE="${WANDB_MODE:-offline}"
exec .venv/bin/vivarl "$@"
