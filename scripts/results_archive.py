"""The value results' archive: trained runs and the pretrained backbone they share, kept beyond a work folder.

A session's /tmp does not outlive it, and five seeds of WVM (40-60 min each on 2 CPU cores) take longer than one
session. So ``results_valuemodel.py`` keeps, in the repository, each run's training record (without this machine's
paths), timings and held-out evaluation (per-episode rows named by recording order, and the overview plot where it
is the section's), and the backbone itself; ``--reuse`` on a fresh machine takes them back instead of training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from learners.backbone_pretrain import BackbonePretrainConfig
from replay import ReplayStore
from valuemodel.evaluate import write_report

# Fields of a training record that name this machine's folders or time its pretraining, not what was trained (the
# training store's content is matched instead of its path: results_valuemodel.run_data).
MACHINE_FIELDS = {
    "learner": {"store_url", "checkpoint_root"},
    "model": {"pretrained_dir"},
    "backbone": {"seconds"},
}


def portable_record(record: dict) -> dict:
    """``training_record`` without its machine fields: what an archived run is matched on."""
    return {
        part: {k: v for k, v in fields.items() if k not in MACHINE_FIELDS[part]} if fields is not None else None
        for part, fields in record.items()
    }  # fmt: skip


def store_content(store: ReplayStore, knobs: dict) -> dict:
    """A store as another session records it again: its recording knobs and a hash of each episode's length,
    outcome and tags in recording order. The same knobs make the same episodes on another machine (all 48
    held-out episodes had the same lengths and events in the tenth session as in the ninth), under new ids (they
    carry the recording time), so ids are not part of it; nor are the floats, which need not agree to the last
    bit between machines."""
    metas = [store.record(episode_id).meta for episode_id in sorted(store.episode_ids())]  # recording order
    content = json.dumps([[m.length, m.outcome.value, sorted(m.tags)] for m in metas])
    return {"knobs": knobs, "episodes_sha256": hashlib.sha256(content.encode()).hexdigest()}


def archive_key(run: str, record: dict, data: dict) -> str:
    made = json.dumps({"made_from": portable_record(record), "data": data}, sort_keys=True)
    return f"{run}_{hashlib.sha256(made.encode()).hexdigest()[:12]}"


def write_json_atomically(path: Path, content: object) -> None:
    """Write whole or not at all: a file cut short by a crash would be read back as a kept run."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=1))
    os.replace(partial, path)


def archive_run(
    archive: Path, run: str, record: dict, data: dict, eval_store: ReplayStore, out: Path,
    timing: tuple[float, float, dict], plotted: bool,
) -> None:  # fmt: skip
    """Keep one run in the archive: its record, timings and evaluation, with each episode named by its index in
    recording order instead of its id, so that a later session's store of the same episodes can pair with it.
    ``plotted``: also keep the overview plot (only the section's: they are about 300 kB each)."""
    report = json.loads((out / "metrics.json").read_text())
    index = {episode_id: i for i, episode_id in enumerate(sorted(eval_store.episode_ids()))}
    rows = [{**{k: v for k, v in row.items() if k != "episode_id"}, "held_out_index": index[row["episode_id"]]}
            for row in report["episodes"]]  # fmt: skip
    train_s, eval_s, metrics = timing
    entry = {
        "run": run, "made_from": portable_record(record), "data": data, "train_s": train_s, "eval_s": eval_s,
        "metrics": metrics, "report": {**report, "episodes": rows},
    }  # fmt: skip
    archive.mkdir(parents=True, exist_ok=True)
    key = archive_key(run, record, data)
    if plotted:  # before the entry, which marks the run complete
        shutil.copyfile(out / "value_curves.png", archive / f"{key}.png")
    write_json_atomically(archive / f"{key}.json", entry)


def restore_archived_run(
    archive: Path, run: str, record: dict, data: dict, eval_store: ReplayStore, out: Path, plotted: bool
) -> tuple[dict, tuple[float, float, dict]] | None:
    """The archived run made from ``record`` and ``data``, written to ``out`` as its evaluation (metrics.json with
    this store's episode ids, metrics.md, and the overview plot), with (train s, eval s, learner metrics); None
    when the archive does not hold it, or holds it without the plot that ``plotted`` (the section's folder) needs."""
    key = archive_key(run, record, data)
    path = archive / f"{key}.json"
    if not path.is_file():
        for other in sorted(archive.glob(f"{run}_*.json")) if archive.is_dir() else []:
            saved = json.loads(other.read_text())
            differ = [
                part for part, fields in portable_record(record).items() if saved["made_from"][part] != fields
            ]
            differ += [part for part, fields in data.items() if saved["data"][part] != fields]
            print(f"archived {other.name} is not this run: its {', '.join(differ)} differ")
        return None
    if plotted and not (archive / f"{key}.png").is_file():
        print(f"archived {path.name} has no overview plot for the section's folder, so it is made again")
        return None
    entry = json.loads(path.read_text())
    ids = sorted(eval_store.episode_ids())
    rows = [{"episode_id": ids[row["held_out_index"]], **{k: v for k, v in row.items() if k != "held_out_index"}}
            for row in entry["report"]["episodes"]]  # fmt: skip
    report = {**entry["report"], "episodes": rows}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_report(report, out)
    if plotted:
        shutil.copyfile(archive / f"{key}.png", out / "value_curves.png")
    print(f"--reuse takes {run} from the archive ({path.name}, trained in {entry['train_s']:.0f} s)")
    return report, (entry["train_s"], entry["eval_s"], entry["metrics"])


# What ``pretrain_backbone`` reports; a training record names its backbone by these (its losses fingerprint it).
BACKBONE_REPORT = ("frames", "vae_loss", "video_loss", "seconds")
# Pretraining config fields that name this machine's folders or threads, not what is pretrained.
BACKBONE_MACHINE_FIELDS = ("store_url", "out_dir", "threads")


def backbone_recipe(config: dict) -> dict:
    """A ``BackbonePretrainConfig`` (as a dict) without its machine fields, JSON-normalised."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in BACKBONE_MACHINE_FIELDS}))


def archived_backbone_key(config: BackbonePretrainConfig, train_content: dict) -> str:
    """The archive's name for a backbone pretrained with ``config`` on the training store ``train_content``.

    Pretraining is not reproducible between machines (the tenth session's final flow loss was .177 where the
    ninth's was .165, same flags and data), so the backbone itself is archived (about 8 MB) and runs trained on it
    in different sessions share it.
    """
    made = json.dumps({"recipe": backbone_recipe(asdict(config)), "train": train_content}, sort_keys=True)
    return f"backbone_{hashlib.sha256(made.encode()).hexdigest()[:12]}"


def copy_backbone(source: Path, destination: Path) -> None:
    """Replace ``destination`` with the pretrained backbone in ``source``; pretrain.json, copied last, marks it
    complete."""
    shutil.rmtree(destination, ignore_errors=True)
    for part in ("transformer", "vae"):
        shutil.copytree(source / part, destination / part)
    shutil.copyfile(source / "pretrain.json", destination / "pretrain.json")


def archive_backbone(archive: Path, key: str, folder: Path) -> bool:
    """Keep the pretrained backbone (``transformer/``, ``vae/``, ``pretrain.json``) unless the archive has one of
    that recipe already. Returns whether the archive's is this one (same losses): only then can runs trained on
    it be archived, since a later session restores the archive's."""
    report = json.loads((folder / "pretrain.json").read_text())
    saved = archive / key / "pretrain.json"
    if not saved.is_file():
        copy_backbone(folder, archive / key)
        return True
    archived = json.loads(saved.read_text())
    if all(archived[k] == report[k] for k in BACKBONE_REPORT if k != "seconds"):
        return True
    print(
        f"the archive's backbone {key} is another pretraining of this recipe (video loss {archived['video_loss']:.4f},"
        f" this one {report['video_loss']:.4f}): runs trained on this one are not archived; with --reuse and no "
        "backbone in the work folder the archive's is used"
    )
    return False


def restore_archived_backbone(archive: Path, key: str, folder: Path) -> bool:
    """Copy the archived backbone ``key`` into ``folder`` (which holds no finished one); False when not archived."""
    if not (archive / key / "pretrain.json").is_file():
        return False
    copy_backbone(archive / key, folder)
    print(f"--reuse takes the pretrained backbone from the archive ({key})")
    return True
