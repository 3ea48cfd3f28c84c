#!/usr/bin/env bash
# Start Ray on this machine with the resources configs/cluster/lab_nodes.yaml gives it.
#   scripts/ray_start_node.sh head
#   scripts/ray_start_node.sh worker HEAD_IP:6379
set -euo pipefail
cd "$(dirname "$0")/.."
role="${1:?usage: ray_start_node.sh head | worker HEAD_ADDRESS}"
resources="$(.venv/bin/python -m improve.node_resources configs/cluster/lab_nodes.yaml)"
ray=.venv/bin/ray
case "$role" in
  head) exec "$ray" start --head --port=6379 --resources="$resources" --include-dashboard=false \
          --autoscaling-config="$HOME/ray_bootstrap_config.yaml" ;;
  worker) exec "$ray" start --address="${2:?worker needs the head address}" --resources="$resources" ;;
  *) echo "ray_start_node.sh: role must be head or worker, got '$role'" >&2; exit 2 ;;
esac
