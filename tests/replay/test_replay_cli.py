from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from episode_data import write_episode

from replay import Outcome, ReplayStore
from replay.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_inspect_and_verify_end_to_end_in_a_subprocess(store):
    write_episode(store, 0, 8, round=0, outcome=Outcome.SUCCESS)
    write_episode(store, 1, 9, round=1, outcome=Outcome.FAILURE)
    write_episode(store, 2, 10, round=1, outcome=Outcome.SUCCESS)
    run = [sys.executable, "-m", "replay.cli"]
    out = subprocess.run([*run, "inspect", store.location.url], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "50%" in out.stdout and "100%" in out.stdout and "on disk" in out.stdout
    out = subprocess.run([*run, "verify", store.location.url], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


def test_verify_exit_status_reports_damage_and_torn_episodes(store, capsys):
    episode_id = write_episode(store, 0, 8)
    chunks = Path(store.location.path("episodes", episode_id, "data", "images", "front"))
    shutil.copyfile(chunks / "c.1.0.0.0", chunks / "c.0.0.0.0")
    assert main(["verify", store.location.url]) == 1
    out = capsys.readouterr().out
    assert episode_id in out and "images/front" in out
    writer = store.episode_writer(robot_id="a", round=0, policy_version="p", task="t")
    writer.abort("test")
    assert main(["verify", "--no-data", "--quarantine", store.location.url]) == 0
    assert "set apart" in capsys.readouterr().out


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a replay store" in capsys.readouterr().out


def test_export_and_import_commands(store, tmp_path, capsys):
    write_episode(store, 0, 5, round=3, outcome=Outcome.FAILURE)
    write_episode(store, 1, 5, round=3, outcome=Outcome.SUCCESS)
    out = tmp_path / "lr"
    assert main(["export", store.location.url, str(out), "--repo-id", "t/x", "--outcome", "success"]) == 0
    target = str(tmp_path / "demo-store")
    assert main(["import", str(out), target, "--repo-id", "t/x"]) == 0
    imported = ReplayStore.open(target)
    (record,) = imported.records().values()
    assert (record.meta.round, record.meta.task, record.meta.outcome) == (0, "seed-1", Outcome.SUCCESS)
    assert "imported 1 episodes" in capsys.readouterr().out
