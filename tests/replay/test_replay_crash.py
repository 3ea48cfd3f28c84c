from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from episode_data import assert_episode_matches
from writer_proc import episode_length, writer_command, writer_env

from replay import FrameIndex, FrameSampler, ReplayStore
from replay.dataset import FrameWindowDataset


def test_kill_9_mid_episode_loses_only_the_torn_episode(store):
    url = store.location.url
    proc = subprocess.Popen(
        writer_command(url, 0, 3, "--crash"), stdout=subprocess.PIPE, text=True, env=writer_env()
    )
    try:
        line = proc.stdout.readline().split()
        assert line[:1] == ["READY"], line
        torn_id = line[1]
        # Let it write (and flush in the background) a little longer, then pull the plug.
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.3)"], check=True)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    reopened = ReplayStore.open(url)
    committed = reopened.episode_ids()
    assert len(committed) == 3 and torn_id not in committed
    for episode_id in committed:
        seed = int(reopened.record(episode_id).meta.task.removeprefix("seed-"))
        assert_episode_matches(reopened, episode_id, seed, episode_length(seed))

    report = reopened.verify()
    assert not report.problems
    (torn,) = report.torn
    assert (torn.episode_id, torn.status, torn.robot_id) == (torn_id, "torn", "doomed")
    assert torn.steps_flushed >= 10  # the flushed part survives on disk for forensics

    sampler = FrameSampler(FrameIndex(reopened), seed=0)
    keys = [k for _ in range(3) for k in sampler]
    assert keys and torn_id not in {e for e, _ in keys}
    assert len(keys) == 3 * sum(episode_length(s) for s in range(3))
    dataset = FrameWindowDataset(reopened)
    batch = dataset.__getitems__(keys[:16])
    assert np.isin(batch["episode_id"], committed).all()

    assert reopened.quarantine_torn() == [torn_id]
    assert reopened.verify().ok and reopened.in_flight() == []
    assert Path(reopened.location.path("torn", torn_id, "data")).is_dir()
