"""The policy learner: one round of policy training on a replay store, readable top to bottom (CleanRL-style).

    frames  <- replay store, filtered by round / outcome / task (all rounds so far by default)
    labels  <- indicators and advantages of a named labelling run (none: plain BC)
    weights <- extraction method: recap | bc | filtered_bc | awr        (see learners.policy_data)
    init    <- base checkpoint or fresh weights (RECAP: every round restarts), or the previous round's policy
    for step in range(steps): batch -> loss -> AdamW step                (cosine learning rate, grad clipping)
    save    -> versioned checkpoint recording labelling run, extraction and round

A Ray actor wraps ``PolicyLearner`` (or calls ``train_policy_round``) later; nothing here knows about Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from checkpoints import version_dir
from learners.loop_timing import LoopTiming
from learners.policy_data import (
    EXTRACTIONS,
    BatchConverter,
    KeptFrameSampler,
    chunk_action_stats,
    delta_scales,
    filtered_bc_keep,
    frame_deltas,
    frame_tasks,
    normalization_stats,
)
from policy.base import Normalizer, PolicyInputs, PolicyModel, PolicyTargets
from policy.checkpoint import list_versions, load_model, read_meta, save_policy
from policy.config import PolicyConfig
from policy.factory import build_model
from replay import TRAINING_PURPOSES, EpisodeFilter, FrameIndex, Outcome, ReplayStore
from replay.dataset import BackgroundBatches, FrameWindowDataset, make_loader


@dataclass
class PolicyLearnerConfig:
    """One policy learner (one checkpoint root); the same config trains every round."""

    store_url: str
    """Replay store to train from."""
    checkpoint_dir: str
    """Checkpoint root; round r's policy is written as the next version under it."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Architecture and deployment behaviour of the policy."""
    extraction: str = "recap"
    """How a policy is extracted from the labels: ``recap`` | ``bc`` | ``filtered_bc`` | ``awr``."""
    labelling_run: str | None = None
    """Derived-column key of the advantages/indicators to train on; None (plain BC) needs extraction ``bc``."""
    restart_each_round: bool = True
    """RECAP's recipe: every round starts from the base checkpoint (or fresh weights) on all data so far;
    False continues from the previous round's policy."""
    base_checkpoint: str | None = None
    """Pre-trained policy to start from (its architecture and normalisation are kept); None = fresh weights."""
    rounds: tuple[int, ...] | None = None
    """Rounds to train on; None = every round up to the one being trained (round 0: the demonstrations)."""
    outcomes: tuple[str, ...] | None = None
    """Episode outcomes to train on (``success``, ``failure``, ``unlabelled``); None = all."""
    tasks: tuple[str, ...] | None = None
    """Tasks to train on; None = all."""
    steps: int = 3000
    """Gradient steps per round."""
    batch_size: int = 32
    """Frames per gradient step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 10% after a short warm-up). 1e-3 rather than 3e-4: a CPU round
    is ~2000 steps, and at 3e-4 the built-in policy had not yet learned to succeed in that budget."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""
    filter_mode: str = "nonnegative"
    """Filtered BC: ``nonnegative`` keeps Delta >= 0, ``top_fraction`` keeps the top ``filter_fraction``."""
    filter_fraction: float = 0.7
    """Filtered BC with ``top_fraction``: fraction of frames kept per task (WVM: 70%)."""
    awr_temperature: float = 1.0
    """AWR tau, applied to Delta divided by its per-task standard deviation."""
    awr_cap: float = 2.0
    """AWR weight cap (WVM: 2)."""
    delta_source: str = "advantage"
    """Delta for filtered BC / AWR: the labelling run's ``advantage``, or ``wvm`` = V(t+H-1) - V(t)."""
    value_key: str | None = None
    """Derived value column for ``delta_source="wvm"`` (model range [-1, 1])."""
    wvm_horizon: int = 4
    """H of the WVM Delta."""
    num_workers: int = 0
    """DataLoader worker processes (0 reads in the training process)."""
    torch_threads: int = 0
    """torch.set_num_threads for training; 0 leaves the process default."""
    device: str = "cpu"
    """Training device."""
    seed: int = 0
    """Seed of initialisation, sampling order, dropout and noise."""
    log_every: int = 100
    """Steps between log lines."""

    def __post_init__(self) -> None:
        if self.extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {list(EXTRACTIONS)}, got {self.extraction!r}")
        if self.labelling_run is None and self.extraction != "bc":
            raise ValueError(f"extraction {self.extraction!r} needs a labelling_run (None trains plain BC)")


@dataclass
class PolicyTrainResult:
    checkpoint: Path
    version: int
    round: int
    frames: int
    losses: list[float]
    wall_time_s: float
    samples_per_s: float = float("nan")
    """Training samples per second of the optimisation loop (waiting on data included)."""
    data_wait_fraction: float = float("nan")
    """Fraction of the optimisation loop spent waiting for the next batch (reading, decoding, converting)."""


def cosine_learning_rate(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def episode_filter_for(config: PolicyLearnerConfig, round_index: int) -> EpisodeFilter:
    """The rounds so far (or the configured ones), and only episodes that carry the labels the method reads."""
    rounds = config.rounds if config.rounds is not None else tuple(range(round_index + 1))
    required: tuple[tuple[str, str], ...] = ()
    if config.extraction == "recap":
        required = (("indicator", config.labelling_run),)
    elif config.delta_source == "advantage" and config.extraction != "bc":
        required = (("advantage", config.labelling_run),)
    elif config.extraction != "bc":
        required = (("value", config.value_key),)
    return EpisodeFilter(
        rounds=rounds,
        # Evaluation episodes measure a policy; training on them would leak the evaluation seeds into the policy.
        purposes=TRAINING_PURPOSES,
        outcomes=None if config.outcomes is None else tuple(Outcome(o) for o in config.outcomes),
        tasks=config.tasks,
        require_derived=required,
    )


def initial_model(
    config: PolicyLearnerConfig, store: ReplayStore, records: list, log: Callable[[str], None]
) -> tuple[PolicyModel, Normalizer, str | None]:
    """Weights and normalisation to start from, and the checkpoint they came from (None = fresh)."""
    previous = list_versions(config.checkpoint_dir)
    start_from = config.base_checkpoint
    if not config.restart_each_round and previous:
        start_from = str(version_dir(config.checkpoint_dir, previous[-1]))
    if start_from is not None:
        model, normalizer, _ = load_model(start_from, config.device)
        log(f"starting from {start_from}")
        return model, normalizer, start_from
    torch.manual_seed(config.seed)
    # The store's schema is the arm's spec: it fills in what the policy config leaves to the arm (the round
    # driver has already filled in the arm's own model defaults, robot.models).
    schema = store.schema
    try:
        policy = config.policy.with_robot_spec(schema.camera_names, schema.state_names, schema.action_names)
    except ValueError as exc:
        raise ValueError(f"{exc} (the arm recorded in {store.location.url})") from None
    stats = normalization_stats(records)
    if policy.relative_action_dims:
        stats["action"] = chunk_action_stats(
            store, records, policy.chunk_size, policy.relative_action_dims, policy.state_dims_of_relative
        )
    return build_model(policy).to(config.device), Normalizer(stats), None


def train_policy_round(
    config: PolicyLearnerConfig,
    round_index: int,
    log: Callable[[str], None] = print,
    on_metrics: Callable[[dict[str, float]], None] = lambda metrics: None,
) -> PolicyTrainResult:
    """Train the policy of round ``round_index`` and save it as the next checkpoint version; ``on_metrics`` gets
    the loss and learning rate every ``log_every`` steps and the round's summary at the end (the actor's W&B)."""
    started = time.monotonic()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    store = ReplayStore.open(config.store_url)

    # 1. Frames: every episode of the rounds so far that passes the filter (and carries the labels needed).
    index = FrameIndex(store, episode_filter_for(config, round_index))
    index.refresh()
    records = list(index.records.values())
    model, normalizer, started_from = initial_model(config, store, records, log)
    policy_config = model.config
    schema = store.schema
    if (policy_config.state_dim, policy_config.action_dim) != (schema.state_dim, schema.action_dim):
        raise ValueError(
            f"policy expects state/action dims {policy_config.state_dim}/{policy_config.action_dim}, the store "
            f"holds {schema.state_dim}/{schema.action_dim}: set policy.state_dim and policy.action_dim"
        )

    # 2. Extraction: which frames, with what weights, see which indicators.
    keep, scales = None, None
    if config.extraction in ("filtered_bc", "awr"):
        deltas = frame_deltas(
            store,
            index,
            source=config.delta_source,
            labelling_run=config.labelling_run,
            value_key=config.value_key,
            wvm_horizon=config.wvm_horizon,
        )
        tasks = frame_tasks(index)
        if config.extraction == "filtered_bc":
            keep = filtered_bc_keep(deltas, tasks, config.filter_mode, config.filter_fraction, config.seed)
        else:
            scales = delta_scales(deltas, tasks)
    sampler = KeptFrameSampler(index, keep, seed=config.seed)
    kept = len(sampler)
    log(
        f"round {round_index}: {len(records)} episodes, {len(index)} frames, {kept} used ({config.extraction})"
    )
    dataset = FrameWindowDataset(
        store,
        horizon=0,
        action_horizon=policy_config.chunk_size,
        cameras=policy_config.cameras,
        advantage_key=config.labelling_run if config.extraction == "awr" else None,
        indicator_key=config.labelling_run if config.extraction == "recap" else None,
    )
    loader = make_loader(
        dataset, sampler, batch_size=config.batch_size, num_workers=config.num_workers, drop_last=True
    )
    convert = BatchConverter(
        policy_config,
        normalizer,
        config.extraction,
        awr_scales=scales,
        awr_temperature=config.awr_temperature,
        awr_cap=config.awr_cap,
        seed=config.seed,
    )

    # 3. Optimise.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    model.train()
    losses: list[float] = []
    step = 0
    timing = LoopTiming()

    def training_batches() -> Iterator[tuple[PolicyInputs, PolicyTargets]]:
        while True:
            produced = False
            for batch in loader:
                produced = True
                yield _to_device(*convert(batch), config.device)
            if not produced:
                raise ValueError(
                    f"{kept} usable frames make no full batch of {config.batch_size}: "
                    "record more episodes or lower batch_size"
                )

    # Reading, decoding and converting the next batches overlaps the optimisation step in a thread.
    with BackgroundBatches(training_batches(), depth=2) as batches:
        while step < config.steps:
            t0 = time.perf_counter()
            inputs, targets = next(batches)
            t1 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(step, config.steps, config.learning_rate)
            loss = model.loss(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            timing.add(t0, t1, time.perf_counter())
            if step % config.log_every == 0 or step == config.steps:
                recent = float(np.mean(losses[-config.log_every :]))
                log(f"round {round_index} step {step}/{config.steps} loss {recent:.4f}")
                on_metrics(
                    {
                        "policy/loss": recent,
                        "policy/learning_rate": optimizer.param_groups[0]["lr"],
                        "policy/data_wait_fraction": timing.data_wait_fraction,
                        "round": round_index,
                    }
                )

    # 4. Save, with the provenance an actor and the round driver need.
    model.eval()
    versions = list_versions(config.checkpoint_dir)
    version = versions[-1] + 1 if versions else 0
    folder = save_policy(
        model,
        normalizer,
        config.checkpoint_dir,
        version,
        labelling_run=config.labelling_run,
        extra={
            "extraction": config.extraction,
            "round": round_index,
            "started_from": started_from,
            "episodes": [r.meta.episode_id for r in records],
            "frames_used": kept,
            "steps": config.steps,
            "request": training_request(config),
            "final_loss": float(losses[-1]) if losses else float("nan"),
            "samples_per_s": timing.samples_per_s(step, config.batch_size),
            "data_wait_fraction": timing.data_wait_fraction,
            "wall_time_s": time.monotonic() - started,
        },
    )
    log(f"round {round_index}: saved {folder}")
    on_metrics(
        {
            "policy/published_version": version,
            "policy/samples_per_s": timing.samples_per_s(step, config.batch_size),
            "round": round_index,
        }
    )
    return PolicyTrainResult(
        folder,
        version,
        round_index,
        kept,
        losses,
        time.monotonic() - started,
        samples_per_s=timing.samples_per_s(step, config.batch_size),
        data_wait_fraction=timing.data_wait_fraction,
    )


def training_request(config: PolicyLearnerConfig) -> dict[str, Any]:
    """What a round's training was asked for, as saved with its version: the same request is not trained twice."""
    return {
        "labelling_run": config.labelling_run,
        "base_checkpoint": None if config.base_checkpoint is None else str(config.base_checkpoint),
        "restart_each_round": config.restart_each_round,
        "extraction": config.extraction,
        "steps": config.steps,
        "seed": config.seed,
    }


def published_round(config: PolicyLearnerConfig, round_index: int) -> PolicyTrainResult | None:
    """The version already published for this round and request, if any (a learner restarted mid-call, or a
    driver that died after the training, asks again)."""
    for version in reversed(list_versions(config.checkpoint_dir)):
        folder = version_dir(config.checkpoint_dir, version)
        meta = read_meta(folder)
        if meta.get("round") == round_index and meta.get("request") == training_request(config):
            return PolicyTrainResult(
                folder,
                version,
                round_index,
                int(meta["frames_used"]),
                [float(meta["final_loss"])],
                float(meta["wall_time_s"]),
                samples_per_s=float(meta["samples_per_s"]),
                data_wait_fraction=float(meta["data_wait_fraction"]),
            )
    return None


def _to_device(
    inputs: PolicyInputs, targets: PolicyTargets, device: str
) -> tuple[PolicyInputs, PolicyTargets]:
    if device == "cpu":
        return inputs, targets
    inputs.images = {k: v.to(device) for k, v in inputs.images.items()}
    inputs.state, inputs.indicator = inputs.state.to(device), inputs.indicator.to(device)
    targets.actions, targets.valid, targets.weight = (
        targets.actions.to(device),
        targets.valid.to(device),
        targets.weight.to(device),
    )
    return inputs, targets


class PolicyLearner:
    """What the learner's Ray actor holds: the config, and one call per round."""

    def __init__(
        self,
        config: PolicyLearnerConfig,
        log: Callable[[str], None] = print,
        on_metrics: Callable[[dict[str, float]], None] = lambda metrics: None,
    ) -> None:
        self.config = config
        self.log = log
        self.on_metrics = on_metrics

    def train_round(
        self, round_index: int, labelling_run: str | None = None, start_from: str | None = None
    ) -> PolicyTrainResult:
        """Train round ``round_index``; ``labelling_run`` overrides the config's (each round relabels), and
        ``start_from`` a checkpoint to continue from (the round driver's deployed policy)."""
        config = self.config if labelling_run is None else replace(self.config, labelling_run=labelling_run)
        if start_from is not None:
            config = replace(config, base_checkpoint=start_from, restart_each_round=True)
        published = published_round(config, round_index)
        if published is not None:
            self.log(
                f"round {round_index}: already trained as version {published.version}, not trained again"
            )
            return published
        return train_policy_round(config, round_index, self.log, self.on_metrics)
