"""Value-model results: ViVa, WVM and the static baseline (tiny) on the same simulated mixed-quality data.

    .venv/bin/python scripts/results_valuemodel.py [--train-episodes 24] [--eval-episodes 24] [--steps 2000]

Records scripted-expert episodes in the box-assembly simulator through the robot actor's episode loop
(``actors.local``) with the hesitation / drop / stall knobs on (and retries only in the held-out set, see below;
the expert's ``events`` say which knobs fired and become the evaluation's episode kinds), pretrains a tiny Wan
backbone on the training episodes' camera frames (``vivarl-pretrain-backbone``: no labels), trains each model with
the value learner on the training store, evaluates it on held-out episodes with ``learners.evaluate_value`` and
writes the side-by-side table into the "value-models" section of RESULTS.md (other sections are left alone) and the
value-curve plots into results/. About 35 minutes on 2 CPU cores with ``--ablate-pretraining``; not a test.

Why retries are held out of training by default (``--train-retry 0``): the scripted expert's retry is a deliberate
undo followed by a redo, so within a recorded episode the steps-to-go target keeps rising through the undo while
task progress falls. Trained on such episodes, a model that fits its target well learns that the undo motion is
progress. The table's "RECAP target" row scores that target itself on the held-out episodes (Retry-VOC -1). As
in WVM's Suboptimal-Value-Bench, the question is whether a model trained on ordinary data (demonstrations with
pauses, drops and stalls) reads a retry it has not been trained on as lost progress.

Every trained run is also kept in ``results/value_runs`` (``--archive``, ``results_archive.py``): its training
record, timings and held-out evaluation (a few tens of kB), committed with the section, and the pretrained backbone
(8 MB, since pretraining again on another machine gives another one). With ``--reuse`` a later run on a new machine
records the same episodes again, takes the backbone from the archive and each run the archive holds instead of
training it, provided it was made from the same configs on the same backbone and training episodes and evaluated
on the same held-out episodes with the same event thresholds. So a study longer than one session (five seeds of
WVM take 3-5 h on 2 cores) can be run a few seeds at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml
from results_archive import (  # scripts/ is on sys.path when a script runs
    BACKBONE_REPORT,
    archive_backbone,
    archive_run,
    archived_backbone_key,
    backbone_recipe,
    restore_archived_backbone,
    restore_archived_run,
    store_content,
)
from results_sections import write_section

from actors.local import record_demonstrations, sim_arm
from learners.backbone_pretrain import BackbonePretrainConfig, pretrain_backbone
from learners.evaluate_value import episode_curves, evaluate_checkpoint, kinds_from_tags
from learners.value_learner import ValueLearner, ValueLearnerConfig
from replay import Outcome, ReplayStore
from robot_io.config import ExpertConfig, SimBoxConfig
from valuemodel.backbone import TINY_TRANSFORMER, vae_spatial_factor
from valuemodel.config import ValueModelConfig
from valuemodel.evaluate import (
    SUMMARY_COLUMNS,
    EventSettings,
    evaluate_curves,
    finite_mean,
    markdown_table,
    paired_difference,
    seed_difference,
)
from valuemodel.targets import episode_value_targets

REPO = Path(__file__).resolve().parents[1]
TASK = "box_assembly"
TIME_LIMIT = 400
MODELS = {"ViVa": "tiny.yaml", "WVM": "wvm_tiny.yaml", "static baseline": "static.yaml"}
CAMERAS = ["front", "wrist"]
BASELINE = "static baseline"


def record(url: str, seeds: range, expert: ExpertConfig) -> dict[str, list[str]]:
    """Scripted-expert episodes into a new store, through the robot actor's episode loop; returns episode id ->
    kinds (from the knobs that fired).

    The archive matches a store by its episodes' lengths, outcomes and tags (``store_content``). Recorded by the
    loop, an episode whose item is dropped runs on to the time limit (the expert holds still), where the earlier
    recorder stopped at the drop; every other episode is the same step for step. So a store with a drop hashes
    differently from the archived runs recorded before, and those are not taken back for it.
    """
    episodes = record_demonstrations(url, sim_arm(SimBoxConfig(), expert), seeds, task=TASK)
    return {e.episode_id: list(kinds_from_tags(e.tags, e.outcome is Outcome.SUCCESS)) for e in episodes}


def target_reference(store: ReplayStore, kinds: dict[str, tuple[str, ...]], out: Path) -> dict[str, float]:
    """The held-out episodes' own RECAP targets (steps-to-go, failure penalty) scored as if they were predictions."""

    def values_of(episode_id: str) -> np.ndarray:
        meta = store.record(episode_id).meta
        return episode_value_targets(meta.length, meta.outcome is Outcome.SUCCESS, TIME_LIMIT)

    name = "RECAP target (reference)"
    report = evaluate_curves(episode_curves(store, values_of, store.episode_ids(), kinds), out, name=name)
    return report["summary"][name]


TRAINED_FILE = "trained.json"


def model_fields(config_file: str) -> dict:
    """The fields a model's file in configs/valuemodel sets, with the cameras it leaves to the arm taken from the
    simulator's preset (``models.value_cameras``), as the main job takes them."""
    fields = yaml.safe_load((REPO / "configs/valuemodel" / config_file).read_text())
    sim_preset = yaml.safe_load((REPO / "configs/robot/sim_box.yaml").read_text())
    fields["cameras"] = fields.get("cameras") or sim_preset["models"]["value_cameras"]
    return fields


def training_record(
    learner_config: ValueLearnerConfig, model_config: ValueModelConfig, backbone: dict | None
) -> dict:
    """What a trained checkpoint was made from: both configs (the model's as far as its kind reads it) and the
    pretrained backbone's report.

    ``--reuse`` keeps a checkpoint only when this matches exactly; the checkpoint folder itself does not record the
    learner's seed, step count or learning rate, and a backbone pretrained again (same folder) makes a new model.
    """
    return json.loads(
        json.dumps(
            {"learner": asdict(learner_config), "model": model_config.kind_fields(), "backbone": backbone}
        )
    )


def train_or_keep(
    learner_config: ValueLearnerConfig, model_config: ValueModelConfig, backbone: dict | None, work: Path,
    reuse: bool,
) -> tuple[float, dict, bool]:  # fmt: skip
    """Train one checkpoint, or under ``reuse`` keep the one ``trained.json`` says was made the same way.

    Returns (train s, learner metrics, kept); a kept checkpoint's seconds and metrics are its own run's.
    """
    root = learner_config.checkpoint_root
    record = training_record(learner_config, model_config, backbone)
    trained_path = work / TRAINED_FILE
    trained = json.loads(trained_path.read_text()) if trained_path.is_file() else {}
    earlier = trained.get(root)
    if reuse and earlier and earlier["made_from"] == record:
        print(f"--reuse keeps {root} (trained in {earlier['train_s']:.0f} s)")
        return earlier["train_s"], earlier["metrics"], True
    trained.pop(root, None)
    trained_path.write_text(json.dumps(trained, indent=1))  # a half-trained checkpoint is never trusted
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.monotonic()
    learner = ValueLearner(learner_config, model_config)
    version = learner.refit(0)
    train_s, metrics = time.monotonic() - t0, dict(learner.metrics)
    trained[root] = {"made_from": record, "train_s": train_s, "metrics": metrics}
    trained_path.write_text(json.dumps(trained, indent=1))
    print(f"{root}: v{version:06d} trained in {train_s:.0f} s")
    return train_s, metrics, False


def train_and_evaluate(
    name: str, model_config: ValueModelConfig, args: argparse.Namespace, work: Path, backbone: dict | None,
    eval_store: ReplayStore, kinds: dict[str, tuple[str, ...]], run: str, out: Path, seed: int, data: dict,
    plotted: bool, archived_backbone: bool,
) -> tuple[dict, list[dict], tuple[float, float, dict], bool, bool]:  # fmt: skip
    """Train (or keep, see ``train_or_keep``) one model and seed, then evaluate it on the held-out store (or keep
    its evaluation, see ``evaluate_or_keep``), and archive the run (``archive_run``). Under ``--reuse`` a run the
    archive holds, made the same way from the same ``data`` (``run_data``), is taken from there instead.

    ``plotted``: ``out`` is the section's plot folder. ``archived_backbone``: the archive holds the pretrained
    backbone ``backbone`` describes, so a run trained on it can be archived (one that names no backbone always can).
    Returns the summary, the per-episode rows, (train s, eval s, learner metrics) and whether the checkpoint and
    its evaluation were kept.
    """
    static = model_config.kind == "static"
    learner_config = ValueLearnerConfig(
        store_url=str(work / "train"), checkpoint_root=str(work / "ckpt" / f"{run}_s{seed}"),
        steps=args.steps, batch_size=32, learning_rate=args.static_lr if static else args.lr, task_names=[TASK],
        time_limit=TIME_LIMIT, checkpoint_every=0, log_every=200, device="cpu", seed=seed,
        wvm_frame_stride=args.wvm_frame_stride,
    )  # fmt: skip
    record = training_record(learner_config, model_config, backbone)
    archive, archived_as = Path(args.archive), f"{run}_s{seed}"
    if args.reuse:
        restored = restore_archived_run(archive, archived_as, record, data, eval_store, out, plotted)
        if restored is not None:
            report, timing = restored
            return report["summary"], report["episodes"], timing, True, True
    train_s, metrics, kept = train_or_keep(learner_config, model_config, backbone, work, args.reuse)
    report, eval_s, kept_evaluation = evaluate_or_keep(
        Path(learner_config.checkpoint_root), eval_store, kinds, out, name, work, kept
    )
    timing = (train_s, eval_s, metrics)
    if backbone is None or archived_backbone:
        archive_run(archive, archived_as, record, data, eval_store, out, timing, plotted)
    return report["summary"], report["episodes"], timing, kept, kept_evaluation


# Trained runs and their backbone, kept in the repository beyond the work folder (results_archive.py).
ARCHIVE = REPO / "results" / "value_runs"


def run_data(work: Path) -> dict:
    """What, besides its configs, an archived run must share with this one: the training and held-out episodes
    and the evaluation's event thresholds."""
    knobs = recorded_knobs(work)
    return {
        "train": store_content(ReplayStore.open(str(work / "train")), knobs["train"]),
        "held_out": store_content(ReplayStore.open(str(work / "eval")), knobs["eval"]),
        "evaluation": asdict(EventSettings()),
    }


# Inside a checkpoint root: its held-out evaluation, removed with the checkpoint when it is trained again.
EVALUATION_DIR = "evaluation"


def held_out_identity(work: Path, eval_store: ReplayStore) -> dict:
    """What a kept evaluation must have been made on: the held-out store's recording knobs and its episodes.

    The episode ids carry the recording time, so a store recorded again with the same knobs is a different store,
    and an evaluation of the old one would pair with nothing in the new one's comparison.
    """
    ids = "\n".join(sorted(eval_store.episode_ids()))
    return {
        "knobs": recorded_knobs(work)["eval"],
        "episode_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
    }


def evaluate_or_keep(
    root: Path, eval_store: ReplayStore, kinds: dict[str, tuple[str, ...]], out: Path, name: str, work: Path,
    kept: bool,
) -> tuple[dict, float, bool]:  # fmt: skip
    """Evaluate a checkpoint on the held-out store, or keep the evaluation a kept checkpoint already has.

    A kept checkpoint (``train_or_keep``) keeps its evaluation when ``trained.json`` says it was of the same
    held-out store (``held_out_identity``): evaluation is deterministic, so it would score the same again, and
    re-evaluating every seed of every model costs about an hour on 2 cores. The copy in the checkpoint root goes
    to ``out``.
    Returns (the report as in metrics.json, eval s (the earlier run's when kept), kept).
    """
    trained_path = work / TRAINED_FILE
    trained = json.loads(trained_path.read_text())
    entry, store, copy = trained[str(root)], held_out_identity(work, eval_store), root / EVALUATION_DIR
    earlier = entry.get("evaluation")
    if kept and earlier and earlier["store"] == store and (copy / "metrics.json").is_file():
        print(f"--reuse keeps the evaluation of {root} (made in {earlier['eval_s']:.0f} s)")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(copy, out)
        return json.loads((out / "metrics.json").read_text()), earlier["eval_s"], True
    t0 = time.monotonic()
    report = evaluate_checkpoint(root, eval_store, out, name=name, tags=kinds)
    eval_s = time.monotonic() - t0
    print(f"{name} ({root.name}): evaluated in {eval_s:.0f} s")
    print(report["table"])
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out, copy)
    entry["evaluation"] = {"store": store, "eval_s": eval_s}
    trained_path.write_text(json.dumps(trained, indent=1))
    return report, eval_s, False


def backbone_mismatches(folder: Path, overrides: dict) -> list[str]:
    """Differences between a reused pretrained transformer and the tiny preset with ``overrides`` on top.

    ``--reuse`` keeps the work folder's backbone, and RESULTS.md then names the flags as if they had made it; a
    backbone pretrained with other overrides would be reported under the wrong architecture.
    """
    saved = json.loads((folder / "transformer" / "config.json").read_text())
    expected = json.loads(json.dumps({**TINY_TRANSFORMER, **overrides}))  # tuples -> lists, as saved
    return [
        f"{key}: folder has {saved.get(key)!r}, flags ask for {value!r}"
        for key, value in expected.items()
        if saved.get(key) != value
    ]


RECORDING_FILE = "recording.json"


def recorded_knobs(work: Path) -> dict[str, dict[str, float]]:
    """The recording knobs of each complete store in the work folder (empty when none is recorded)."""
    path = work / RECORDING_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def stores_to_record(work: Path, wanted: dict[str, dict[str, float]], reuse: bool) -> list[str]:
    """Which of the work folder's stores ("train", "eval") must be recorded (again) for ``wanted``.

    ``wanted`` maps each store to its recording knobs (episodes, retry, seeds). ``--reuse`` keeps a store only
    when the folder's recording.json says it was made with the same knobs: RESULTS.md names the flags as if they
    had made the data. A new training store also voids the pretrained backbone, which was fitted on its frames.
    """
    if not reuse:
        return list(wanted)
    saved = recorded_knobs(work)
    return [name for name, knobs in wanted.items() if saved.get(name) != knobs or not (work / name).is_dir()]


def comparison_table(
    episode_rows: dict[str, list[dict]], per_seed: dict[str, list[dict[str, float]]], seeds: list[int]
) -> str:
    """Each model minus the static baseline on the goal's two metrics: over held-out episodes with 90%
    paired-bootstrap intervals, and (with several seeds) over training seeds with a one-sided rank test."""
    goal = {"retry_voc": "Retry-VOC", "error_rate": "ErrDR"}
    over_seeds = len(seeds) > 1
    header = [f"{label} difference [90% interval]" for label in goal.values()]
    if over_seeds:
        header += [f"{label} over seeds (p)" for label in goal.values()]
    lines = [
        f"Difference from the {BASELINE} on the same held-out episodes (model minus baseline; per-episode metrics "
        f"averaged over the {len(seeds)} training seed(s) first, then a 90% BCa bootstrap over episodes, "
        "`valuemodel.evaluate.paired_difference`; the interval covers which episodes were drawn, not the "
        "seed-to-seed spread"
        + (
            '; "over seeds" is the difference of the per-seed means in the table above, with the one-sided '
            "Mann-Whitney p-value that the model's seeds sit above the baseline's, `seed_difference`"
            if over_seeds
            else ""
        )
        + "):",
        "",
        "| model | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for name, rows in episode_rows.items():
        if name == BASELINE:
            continue
        cells = []
        for key in goal:
            d = paired_difference(rows, episode_rows[BASELINE], key)
            cells.append(
                f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] ({int(d['episodes'])} episodes)"
            )
        if over_seeds:
            for key in goal:
                d = seed_difference([r[key] for r in per_seed[name]], [r[key] for r in per_seed[BASELINE]])
                cells.append(f"{d['difference']:+.2f} (p {d['p']:.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-episodes", type=int, default=24)
    parser.add_argument("--eval-episodes", type=int, default=24)
    parser.add_argument("--steps", type=int, default=2000, help="training steps of every model (batch 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of ViVa and WVM")
    parser.add_argument(
        "--static-lr", type=float, default=1e-3, help="peak learning rate of the static baseline"
    )
    parser.add_argument(
        "--wvm-frame-stride", type=int, default=ValueLearnerConfig.wvm_frame_stride,
        help="control steps between WVM's window frames (5 = 2 fps at the simulator's 10 Hz)",
    )  # fmt: skip
    parser.add_argument(
        "--wvm-overrides", type=json.loads, default={},
        help=f"JSON of ValueModelConfig fields over configs/valuemodel/{MODELS['WVM']} for the WVM rows, for "
        'ablations, e.g. \'{"prefix_frames": 0}\'',
    )  # fmt: skip
    parser.add_argument("--train-retry", type=float, default=0.0, help="retry knob of the training episodes")
    parser.add_argument("--eval-retry", type=float, default=0.3, help="retry knob of the held-out episodes")
    parser.add_argument(
        "--eval-first-seed", type=int, default=1000, help="simulator seed of the first held-out episode"
    )
    parser.add_argument("--pretrain-vae-steps", type=int, default=BackbonePretrainConfig.vae_steps)
    parser.add_argument("--pretrain-vae-batch-size", type=int, default=BackbonePretrainConfig.vae_batch_size)
    parser.add_argument("--pretrain-video-steps", type=int, default=BackbonePretrainConfig.video_steps)
    parser.add_argument(
        "--pretrain-transformer-overrides", type=json.loads, default={},
        help='JSON of Wan transformer kwargs over the tiny preset, e.g. \'{"num_layers": 4}\'',
    )  # fmt: skip
    parser.add_argument(
        "--no-pretrain", action="store_true", help="ViVa and WVM on random-init backbones only"
    )
    parser.add_argument(
        "--ablate-pretraining", action="store_true", help="also train ViVa and WVM on random-init backbones"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a shared machine)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated subset of {list(MODELS)}"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds; rows report their mean")
    parser.add_argument("--section", default="value-models", help="RESULTS.md section to (re)write")
    parser.add_argument(
        "--results-md", default=str(REPO / "RESULTS.md"), help="file the section is written to"
    )
    parser.add_argument("--plots", default=str(REPO / "results"), help="folder of the value-curve plots")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the work folder's pretrained backbone, the stores recorded with the same episode counts "
        "and retry knobs (a store made with others is recorded again; a new training store voids the backbone) "
        f"and the trained checkpoints whose configs and backbone match (listed in {TRAINED_FILE}), with their "
        "evaluations of the same held-out store",
    )
    parser.add_argument("--work", default="/tmp/vivarl_value_results")
    parser.add_argument(
        "--archive", default=str(ARCHIVE),
        help="folder that keeps every trained run's record and evaluation beyond the work folder; under --reuse "
        "a run it holds (same configs, backbone and held-out episodes) is not trained again",
    )  # fmt: skip
    args = parser.parse_args()
    if args.eval_first_seed < args.train_episodes:
        parser.error(
            f"--eval-first-seed {args.eval_first_seed} would repeat training episodes (seeds 0-"
            f"{args.train_episodes - 1}); pass a seed of at least {args.train_episodes}"
        )
    try:
        ValueModelConfig.from_dict({**model_fields(MODELS["WVM"]), **args.wvm_overrides})
    except (TypeError, ValueError) as error:
        parser.error(f"--wvm-overrides {json.dumps(args.wvm_overrides)}: {error}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    seeds = [int(x) for x in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    started = time.monotonic()
    wanted = {
        "train": {"episodes": args.train_episodes, "retry": args.train_retry},
        "eval": {
            "episodes": args.eval_episodes,
            "retry": args.eval_retry,
            "first_seed": args.eval_first_seed,
        },
    }
    todo = stores_to_record(work, wanted, args.reuse)
    if args.reuse and todo:
        print(f"--reuse: {todo} not in {work / RECORDING_FILE} with these knobs, so recorded again")
    if "train" in todo:
        shutil.rmtree(work, ignore_errors=True)
        todo = list(wanted)
    work.mkdir(parents=True, exist_ok=True)
    knobs = dict(hesitation_prob=0.3, drop_prob=0.1, stall_prob=0.03)
    recorded = recorded_knobs(work)
    for name in todo:
        first = 0 if name == "train" else args.eval_first_seed
        shutil.rmtree(work / name, ignore_errors=True)
        recorded.pop(name, None)
        (work / RECORDING_FILE).write_text(json.dumps(recorded))  # a half-recorded store is never trusted
        episode_kinds = record(
            str(work / name),
            range(first, first + wanted[name]["episodes"]),
            ExpertConfig(**knobs, retry_prob=wanted[name]["retry"]),
        )
        if name == "eval":
            (work / "eval_tags.json").write_text(json.dumps(episode_kinds))
        recorded[name] = wanted[name]
        (work / RECORDING_FILE).write_text(json.dumps(recorded))
        print(f"recorded {len(episode_kinds)} {name} episodes in {time.monotonic() - started:.0f} s")
    eval_kinds = json.loads((work / "eval_tags.json").read_text())
    kinds = {k: tuple(v) for k, v in eval_kinds.items()}
    train_count = len(ReplayStore.open(str(work / "train")).episode_ids())
    eval_store = ReplayStore.open(str(work / "eval"))
    data = run_data(work)

    pretrained_dir, pretrain_report, archived_backbone = "", None, False
    if not args.no_pretrain:
        pretrain_config = BackbonePretrainConfig(
            store_url=str(work / "train"), out_dir=str(work / "wan_tiny_pretrained"), cameras=CAMERAS,
            vae_steps=args.pretrain_vae_steps, vae_batch_size=args.pretrain_vae_batch_size,
            video_steps=args.pretrain_video_steps, transformer_overrides=args.pretrain_transformer_overrides,
        )  # fmt: skip
        pretrained_dir = pretrain_config.out_dir
        done = Path(pretrained_dir) / "pretrain.json"
        backbone_key = archived_backbone_key(pretrain_config, data["train"])
        if args.reuse and not done.is_file():
            restore_archived_backbone(Path(args.archive), backbone_key, Path(pretrained_dir))
        if args.reuse and done.is_file():
            saved = json.loads(done.read_text())
            recipe, wanted_recipe = backbone_recipe(saved["config"]), backbone_recipe(asdict(pretrain_config))
            if recipe != wanted_recipe:
                differ = sorted(k for k in wanted_recipe if recipe.get(k) != wanted_recipe[k])
                parser.error(
                    f"the reused backbone in {pretrained_dir} was pretrained with other settings ({differ}); "
                    "pass the flags it was made with, or drop --reuse to pretrain again"
                )
            mismatches = backbone_mismatches(Path(pretrained_dir), args.pretrain_transformer_overrides)
            if mismatches:
                parser.error(
                    f"the reused backbone in {pretrained_dir} was not pretrained with these "
                    f"--pretrain-transformer-overrides ({'; '.join(mismatches)}); pass the overrides it was "
                    "made with, or drop --reuse to pretrain again"
                )
            pretrain_report = {k: saved[k] for k in BACKBONE_REPORT}  # the fields pretrain_backbone returns
        else:
            pretrain_report = pretrain_backbone(pretrain_config)
        archived_backbone = archive_backbone(Path(args.archive), backbone_key, Path(pretrained_dir))
        print(f"pretrained the tiny backbone: {pretrain_report}")

    runs: list[tuple[str, str, str]] = []  # (row name, config file, pretrained_dir)
    for name in models:
        runs.append((name, MODELS[name], "" if MODELS[name] == "static.yaml" else pretrained_dir))
    if pretrained_dir and args.ablate_pretraining:
        runs += [
            (f"{name}, random-init backbone", MODELS[name], "") for name in ("ViVa", "WVM") if name in models
        ]
    summaries, timings, plots, per_seed, episode_rows = {}, {}, [], {}, {}
    kept_runs: dict[str, list[str]] = {}  # row name -> kept seeds, "*" marking those evaluated again
    for name, config_file, backbone_dir in runs:
        overrides = args.wvm_overrides if config_file == MODELS["WVM"] else {}
        model_config = ValueModelConfig(
            **{**model_fields(config_file), **overrides, "pretrained_dir": backbone_dir}
        )
        random_init = model_config.kind != "static" and not backbone_dir
        if random_init:
            # A random-init backbone gets the pretrained one's architecture (a pretrained folder brings its own).
            model_config.transformer_overrides = dict(args.pretrain_transformer_overrides)
        # Ablation rows (random init next to a pretrained main row) get their own folder.
        ablation = bool(pretrained_dir) and random_init
        out = Path(args.plots) / f"value_{model_config.kind}{'_random_init' if ablation else ''}"
        plots.append(out / "value_curves.png")
        per_seed[name], episode_rows[name] = [], []
        for i, seed in enumerate(seeds):
            # The first seed's curves are the plotted ones; the others are kept in the work folder.
            folder = out if i == 0 else work / "eval_out" / f"{out.name}_s{seed}"
            summary, rows, timing, kept, kept_evaluation = train_and_evaluate(
                name, model_config, args, work, pretrain_report if backbone_dir else None, eval_store, kinds,
                out.name, folder, seed, data, plotted=i == 0, archived_backbone=archived_backbone,
            )  # fmt: skip
            per_seed[name].append(summary[name])
            episode_rows[name] += rows
            timings.setdefault(name, timing)
            if kept:
                kept_runs.setdefault(name, []).append(f"{seed}" + ("" if kept_evaluation else "*"))
            reference = summary["ground truth (reference)"]
        summaries[name] = {k: finite_mean(per_seed[name], k) for k in per_seed[name][0]}
    target = target_reference(eval_store, kinds, work / "target_reference")
    ordered = {**summaries, "RECAP target (reference)": target, "ground truth (reference)": reference}
    counts = {
        k: sum(k in v for v in eval_kinds.values()) for k in ("expert", "hesitation", "retry", "failure")
    }
    events = {k: int(reference[k]) for k in ("milestones", "errors")}
    command = (
        f"`scripts/results_valuemodel.py --train-episodes {args.train_episodes} --eval-episodes "
        f"{args.eval_episodes} --steps {args.steps} --lr {args.lr:g} --static-lr {args.static_lr:g} "
        f"--train-retry {args.train_retry:g}"
        + (f" --eval-retry {args.eval_retry:g}" if args.eval_retry != parser.get_default("eval_retry") else "")
        + (f" --eval-first-seed {args.eval_first_seed}"
           if args.eval_first_seed != parser.get_default("eval_first_seed") else "")
        + (" --no-pretrain" if args.no_pretrain else f" --pretrain-vae-steps {args.pretrain_vae_steps} --pretrain-vae-batch-size {args.pretrain_vae_batch_size} "
           f"--pretrain-video-steps {args.pretrain_video_steps}")
        + (f" --pretrain-transformer-overrides '{json.dumps(args.pretrain_transformer_overrides)}'"
           if args.pretrain_transformer_overrides else "")
        + (" --ablate-pretraining" if args.ablate_pretraining else "")
        + (f" --wvm-frame-stride {args.wvm_frame_stride}"
           if args.wvm_frame_stride != ValueLearnerConfig.wvm_frame_stride else "")
        + (f" --wvm-overrides '{json.dumps(args.wvm_overrides)}'" if args.wvm_overrides else "")
        + (f" --models '{args.models}'" if models != list(MODELS) else "")
        + (f" --seeds {args.seeds}" if seeds != [0] else "")
        + (" --reuse" if args.reuse else "")
        + (f" --section {args.section}" if args.section != "value-models" else "")
        + (f" --plots {os.path.relpath(args.plots, REPO)}" if Path(args.plots) != REPO / "results" else "")
        + f" --threads {args.threads}`"
    )  # fmt: skip
    control_hz = SimBoxConfig().control_hz
    evaluated_again = any(seed.endswith("*") for kept in kept_runs.values() for seed in kept)
    viva_horizon = model_fields(MODELS["ViVa"])["horizon"]
    wvm_overrides = f", with {args.wvm_overrides} over its config" if args.wvm_overrides else ""
    lines = [
        f"Tiny models (64x64 images, CPU) trained by `learners.value_learner` on {train_count} simulated "
        f"scripted-expert episodes (hesitation 0.3 per stage, drop 0.1 and stall 0.03 per episode, retry "
        f"{args.train_retry:g}) and evaluated with `vivarl-eval-value` on {len(eval_kinds)} held-out episodes with "
        f"the same knobs plus retry {args.eval_retry:g} per placement and flap fold ({counts}; {events['milestones']} stage "
        f"completions, {events['errors']} ground-truth falls of progress). Every model: {args.steps} steps of batch "
        f"32 (ViVa/WVM peak lr {args.lr:g}, static {args.static_lr:g}; ViVa's future state {viva_horizon} steps ahead, WVM windows of frames "
        f"{args.wvm_frame_stride} control steps apart, {control_hz / args.wvm_frame_stride:g} fps at {control_hz:g} Hz{wvm_overrides}); rows are means over training seeds "
        f"{seeds}. {command}, "
        f"{(time.monotonic() - started) / 60:.1f} min in all on 2 CPU cores"
        + (
            f" (kept from earlier runs with the same flags, in the work folder or `{os.path.relpath(args.archive, REPO)}`, "
            "with their evaluations, so not in that time: "
            + "; ".join(f"{name} seeds {', '.join(seeds_kept)}" for name, seeds_kept in kept_runs.items())
            + (" (* evaluated again)" if evaluated_again else "")
            + "; their train s and eval s are the earlier runs')"
            if kept_runs
            else ""
        )
        + ".",
        "",
    ]
    if pretrain_report:
        arch = json.loads((Path(pretrained_dir) / "transformer" / "config.json").read_text())
        vae = json.loads((Path(pretrained_dir) / "vae" / "config.json").read_text())
        factor = vae_spatial_factor(vae)
        lines += [
            f"ViVa and WVM start from a tiny Wan backbone pretrained by `vivarl-pretrain-backbone` on the training "
            f"episodes' camera frames only ({int(pretrain_report['frames'])} frames x 2 cameras, no labels: VAE with "
            f"{vae['z_dim']} latent channels at {factor}x downsampling ({3 * factor**2 / vae['z_dim']:g}x compression), "
            f"{args.pretrain_vae_steps} steps of batch {args.pretrain_vae_batch_size} as an autoencoder, final MSE {pretrain_report['vae_loss']:.3f}; "
            f"transformer ({arch['num_layers']} blocks of width {arch['num_attention_heads'] * arch['attention_head_dim']}, "
            f"FFN {arch['ffn_dim']}) {args.pretrain_video_steps} steps as a first-frame-conditioned video generator, final flow "
            f"loss {pretrain_report['video_loss']:.3f}; {pretrain_report['seconds'] / 60:.1f} min), the small-scale "
            "stand-in for the pretrained Wan2.2 weights that cannot be downloaded here. The static baseline learns "
            "its own CNN from the same frames with labels.",
            "",
        ]
    lines += [
        markdown_table(ordered),
        "",
        "Columns: " + ", ".join(SUMMARY_COLUMNS.values()) + " as defined in `valuemodel/evaluate.py`. VOC on "
        "successful episodes; Pearson/Spearman against ground-truth progress; Hes-RMSE (lower is better) on "
        "episodes where the expert paused and Retry-VOC on those where it undid a stage (kinds from the "
        "expert's fired knobs); MDR/ErrDR = detected stage completions / ground-truth falls (pooled). "
        "Magnitude metrics compare the per-episode min-max normalised value curve with progress (the RECAP "
        "target is steps-to-go, not progress). The reference rows score the held-out episodes' own RECAP "
        "target and ground-truth progress as if they were predictions. Paper anchors (real data, full-size "
        "models): WVM Hes-RMSE .05, Retry-VOC .78; ViVa ErrDR 1.00.",
        "",
        "| model | train s | eval s | final loss | learner samples/s | data-wait fraction |",
        "|---|---|---|---|---|---|",
    ]
    for name, (train_s, eval_s, m) in timings.items():
        lines.append(f"| {name} | {train_s:.0f} | {eval_s:.0f} | {m.get('loss', float('nan')):.3f} | "
                     f"{m.get('samples_per_s', float('nan')):.0f} | {m.get('data_wait_fraction', float('nan')):.2f} |")  # fmt: skip
    if len(seeds) > 1:
        lines += ["", f"Per training seed ({', '.join(map(str, seeds))}):", "",
                  "| model | VOC | Retry-VOC | ErrDR |", "|---|---|---|---|"]  # fmt: skip
        for name, rows in per_seed.items():
            cells = [", ".join(f"{r[k]:.2f}" if np.isfinite(r[k]) else "n/a" for r in rows)
                     for k in ("voc", "retry_voc", "error_rate")]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if BASELINE in episode_rows:
        lines += ["", comparison_table(episode_rows, per_seed, seeds)]
    lines += ["", "Plots: " + ", ".join(f"`{os.path.relpath(p, REPO)}`" for p in plots)]
    title = "Value models" if args.section == "value-models" else f"Value models ({args.section})"
    write_section(
        Path(args.results_md), args.section, f"## {title}\n\n" + "\n".join(lines),
        source="scripts/results_valuemodel.py",
    )  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
