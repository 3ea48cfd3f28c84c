"""The lab cluster files: Ray's own validation of lab.yaml, and each node's resources from the node table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from improve.node_resources import resources_for

ROOT = Path(__file__).resolve().parents[2]


def test_lab_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((ROOT / "configs/cluster/lab.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["provider"]["type"] == "local"
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in starts if "ray_start_node" in cmd)
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("scripts/setup.sh" in cmd for cmd in config["setup_commands"])


def test_every_cluster_ip_has_a_node_table_entry():
    config = yaml.safe_load((ROOT / "configs/cluster/lab.yaml").read_text())
    table = yaml.safe_load((ROOT / "configs/cluster/lab_nodes.yaml").read_text())
    ips = [config["provider"]["head_ip"], *config["provider"]["worker_ips"]]
    assert set(ips) == set(table)
    robots = [k for ip in ips for k in table[ip]["resources"] if k.startswith("robot:")]
    assert len(robots) == len(set(robots)) == 2


def test_node_resources_pick_this_machine_only():
    table = {"10.0.0.21": {"resources": {"robot:arm0": 1}}, "bench-pc": {"resources": {"robot:arm1": 1}}}
    assert resources_for(table, {"10.0.0.21", "lab-pc"}) == {"robot:arm0": 1.0}
    assert resources_for(table, {"bench-pc"}) == {"robot:arm1": 1.0}
    assert resources_for(table, {"10.9.9.9"}) == {}
    with pytest.raises(SystemExit, match="several entries"):
        resources_for(table, {"10.0.0.21", "bench-pc"})
    with pytest.raises(SystemExit, match="positive numbers"):
        resources_for({"h": {"resources": {"robot:x": 0}}}, {"h"})


def test_node_resources_command_prints_json(tmp_path):
    import socket

    (tmp_path / "nodes.yaml").write_text(
        yaml.safe_dump({socket.gethostname(): {"resources": {"robot:a": 1}}})
    )
    out = subprocess.run(
        [sys.executable, "-m", "improve.node_resources", str(tmp_path / "nodes.yaml")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert json.loads(out) == {"robot:a": 1.0}
