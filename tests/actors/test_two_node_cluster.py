"""A two-node Ray cluster on one machine, token auth on: each arm's actor lands on the node wired to it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))
PROBE = Path(__file__).with_name("two_node_probe.py")
pytestmark = pytest.mark.slow


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def ray_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").lower()
            except OSError:
                continue
            if "ray" in cmdline and int(entry.name) != os.getpid():
                pids.add(int(entry.name))
    return pids


def stop_new_ray_processes(before: set[int]) -> None:
    """Stop only the Ray processes this test started (``ray stop`` would stop every Ray on the machine)."""
    for pid in ray_processes() - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_robot_actor_lands_on_the_node_with_its_resource(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    run([RAY, "get-auth-token", "--generate"], env)
    # Ray's socket paths must stay under 107 bytes, so its session folders go in short /tmp names.
    head_dir, worker_dir = (tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("vh", "vw"))
    port = "6391"
    before = ray_processes()
    try:
        run(
            [
                RAY,
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--temp-dir={head_dir}",
                "--resources={}",
            ],
            env,
        )
        run(
            [
                RAY,
                "start",
                f"--address=127.0.0.1:{port}",
                "--num-cpus=2",
                f"--temp-dir={worker_dir}",
                "--resources=" + json.dumps({"robot:arm1": 1}),
            ],
            env,
        )
        # Nothing joins without the token: the same probe with token auth off is refused.
        refused = subprocess.run(
            [sys.executable, str(PROBE), f"127.0.0.1:{port}", str(tmp_path / "replay")],
            env={**env, "RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path / "elsewhere")},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert refused.returncode != 0
        out = run([sys.executable, str(PROBE), f"127.0.0.1:{port}", str(tmp_path / "replay")], env)
    finally:
        stop_new_ray_processes(before)
        for folder in (head_dir, worker_dir):
            shutil.rmtree(folder, ignore_errors=True)
    result = json.loads(out.strip().splitlines()[-1])
    wired = [node for node, res in result["nodes"].items() if res.get("robot:arm1")]
    assert len(result["nodes"]) == 2 and len(wired) == 1
    assert result["landed"] == wired[0]
    assert "arm 'arm9' needs resource 'robot:arm9'" in result["ghost_error"]
