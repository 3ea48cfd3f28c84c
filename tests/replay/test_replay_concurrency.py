from __future__ import annotations

import subprocess
import time

from episode_data import assert_episode_matches
from writer_proc import episode_length, writer_command, writer_env

from replay import FrameIndex, ReplayStore
from replay.dataset import FrameWindowDataset


def test_concurrent_writer_processes_with_a_reader_throughout(store):
    url = store.location.url
    writers, per_writer = 3, 4
    procs = [
        subprocess.Popen(writer_command(url, 100 * w, per_writer, "--step-sleep", "0.01"), env=writer_env())
        for w in range(writers)
    ]
    reader = ReplayStore.open(url)
    dataset = FrameWindowDataset(reader, horizon=3)
    index = FrameIndex(reader)
    checked: set[str] = set()
    reads_while_writing = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = any(p.poll() is None for p in procs)
        for episode_id in reader.episode_ids():
            if episode_id in checked:
                continue
            seed = int(reader.record(episode_id).meta.task.removeprefix("seed-"))
            assert_episode_matches(reader, episode_id, seed, episode_length(seed))
            checked.add(episode_id)
            reads_while_writing += running
        if index.refresh():
            keys = index.keys(list(range(0, len(index), 3)))
            batch = dataset.__getitems__(keys)
            assert batch["step"].tolist() == [s for _, s in keys]
        if not running:
            break
        time.sleep(0.05)
    assert [p.wait(timeout=60) for p in procs] == [0] * writers
    assert len(checked) == len(reader.episode_ids()) == writers * per_writer
    assert reads_while_writing > 0
    assert reader.verify().ok
