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
import time
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


def process_table() -> dict[int, tuple[int, list[bytes]]]:
    """Every process's parent and environment, read from /proc (this one left out)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                status = (entry / "status").read_text()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
            table[int(entry.name)] = (ppid, environ)
    return table


def processes_started_with_home(home: Path) -> set[int]:
    """The Ray processes this test started: those whose environment has the test's private ``HOME``, and all
    their descendants (Ray's agents rename themselves over their command line and environment, so only their
    parent tells them apart). Never "every new Ray process": that would also stop a Ray that another program on
    the machine started meanwhile, such as a study's run."""
    mark = f"HOME={home}".encode()
    table = process_table()
    found = {pid for pid, (_, environ) in table.items() if mark in environ}
    while grown := {pid for pid, (ppid, _) in table.items() if ppid in found} - found:
        found |= grown
    return found


def is_running(pid: int) -> bool:
    """Whether ``pid`` still runs: a killed process stays in /proc as a zombie until its parent reaps it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not any(line.startswith("State:") and line.split()[1] == "Z" for line in status.splitlines())


def stop_processes_started_with_home(home: Path, timeout: float = 30) -> None:
    """Kill this test's Ray processes, and wait until they are gone (a straggler would outlive the test)."""
    pids = processes_started_with_home(home)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        pids = {pid for pid in pids | processes_started_with_home(home) if is_running(pid)}
    assert not pids, f"Ray processes of this test still running after {timeout:.0f} s: {sorted(pids)}"


def test_robot_actor_lands_on_the_node_with_its_resource(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    run([RAY, "get-auth-token", "--generate"], env)
    # Ray's socket paths must stay under 107 bytes, so its session folders go in short /tmp names.
    head_dir, worker_dir = (tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("vh", "vw"))
    port = "6391"
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
        stop_processes_started_with_home(tmp_path)
        for folder in (head_dir, worker_dir):
            shutil.rmtree(folder, ignore_errors=True)
    result = json.loads(out.strip().splitlines()[-1])
    wired = [node for node, res in result["nodes"].items() if res.get("robot:arm1")]
    assert len(result["nodes"]) == 2 and len(wired) == 1
    assert result["landed"] == wired[0]
    assert "arm 'arm9' needs resource 'robot:arm9'" in result["ghost_error"]
