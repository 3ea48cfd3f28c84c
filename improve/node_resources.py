"""Print the Ray resources (JSON) that this machine should advertise, from the cluster's node table.

Run by ``scripts/ray_start_node.sh`` on every node of the lab cluster: the machine is found by any of its IP
addresses or its host name, so each robot PC advertises exactly the arms wired to it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import yaml


def local_names() -> set[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
        names.update(out.split())
    except (OSError, subprocess.SubprocessError):
        pass
    return names


def resources_for(table: dict, names: set[str]) -> dict[str, float]:
    matches = [key for key in table if str(key) in names]
    if len(matches) > 1:
        raise SystemExit(f"node_resources: this machine matches several entries {matches}; keep one")
    if not matches:
        return {}
    entry = table[matches[0]] or {}
    resources = entry.get("resources") or {}
    bad = {k: v for k, v in resources.items() if not isinstance(v, int | float) or v <= 0}
    if bad:
        raise SystemExit(f"node_resources: resource amounts must be positive numbers, got {bad}")
    return {str(k): float(v) for k, v in resources.items()}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m improve.node_resources NODES_YAML")
    table = yaml.safe_load(Path(argv[0]).read_text()) or {}
    print(json.dumps(resources_for(table, local_names())))


if __name__ == "__main__":
    main()
