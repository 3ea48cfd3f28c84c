"""A two-node Ray cluster on one machine, token auth on: each arm's actor lands on the node wired to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from actors.robot_actor import ActorSettings, launch_robot_actors
from robot_io import RobotConfig, SimBoxConfig

RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def ray_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture
def two_node_cluster(tmp_path, monkeypatch):
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    ray_cli("get-auth-token", "--generate", env=env)
    port = "6391"
    # Ray's socket paths must stay under 107 bytes, so its session folders go in short /tmp names.
    head_dir, worker_dir = (tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("vh", "vw"))
    ray_cli("start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
            f"--temp-dir={head_dir}", "--resources={}", env=env)
    try:
        ray_cli("start", f"--address=127.0.0.1:{port}", "--num-cpus=2", f"--temp-dir={worker_dir}",
                "--resources=" + json.dumps({"robot:arm1": 1}), env=env)
        for key in ("HOME", "RAY_AUTH_MODE"):
            monkeypatch.setenv(key, env[key])
        import ray

        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield ray
        ray.shutdown()
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        for folder in (head_dir, worker_dir):
            shutil.rmtree(folder, ignore_errors=True)


def test_robot_actor_lands_on_the_node_with_its_resource(two_node_cluster, tmp_path):
    ray = two_node_cluster
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    wired = [node for node, res in nodes.items() if res.get("robot:arm1")]
    assert len(wired) == 1
    robot = RobotConfig(type="sim_box", name="arm1", sim_box=SimBoxConfig(image_height=32, image_width=32))
    handles = launch_robot_actors([ActorSettings(robot=robot, store_url=str(tmp_path / "replay"), task="t")])

    @ray.remote(num_cpus=0)
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    node_of_actor = ray.get(handles["arm1"].node_id.remote())
    assert node_of_actor == wired[0]
    # A second arm that no node is wired to is refused before anything starts.
    ghost = RobotConfig(type="sim_box", name="arm9")
    with pytest.raises(RuntimeError, match="arm 'arm9' needs resource 'robot:arm9'"):
        launch_robot_actors([ActorSettings(robot=ghost, store_url=str(tmp_path / "replay"), task="t")])
    assert ray.get(where.remote()) in nodes
