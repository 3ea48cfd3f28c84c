"""The value learner: fits a value model (ViVa, WVM or the static baseline) on a replay store, readable top to bottom.

    refit(round):   frames <- every committed success/failure demo or rollout so far, less the held-out split
                    stats  <- state range and L_max per task (fixed for the run, saved as norm stats)
                    model  <- fresh (pretrained backbone) or, with warm_start, the latest published version
                    for step in range(steps): batch -> ValueBatch -> flow/MSE loss -> AdamW step
                    publish -> value-model version v{n}; a non-finite loss stops before anything is published
    run_continual:  the same loop in chunks of steps; before each chunk the FrameIndex is refreshed (episodes
                    committed meanwhile join) and after it a new version is published
    label(version): batched inference over every committed episode -> store.write_derived("value", key, ...)

Crash safety: every ``checkpoint_every`` steps the learner writes its training state (model, optimiser, schedule,
step, sampler position, stats, noise generator) atomically under ``<checkpoint_root>/train_state/``; a restarted
learner resumes from it. The version a refit publishes is fixed when the refit starts, so a refit that crashes after
publishing never publishes twice. Nothing here knows about Ray (``learners.value_actor`` wraps it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from learners.loop_timing import LoopTiming
from learners.value_data import (
    LatentCache,
    ValueBatchAdapter,
    ValueDataStats,
    batch_adapter,
    compute_value_stats,
    episode_predictor,
    frame_dataset,
)
from learners.value_quality import ValueFloorConfig, ValueQuality, assess_values, held_out_episodes
from replay import TRAINING_PURPOSES, EpisodeFilter, FrameIndex, FrameSampler, Outcome, ReplayStore
from replay.dataset import make_loader
from valuemodel.checkpoint import (
    list_versions,
    load_checkpoint,
    load_norm_stats,
    save_checkpoint,
    version_dir,
)
from valuemodel.config import ValueModelConfig
from valuemodel.factory import build_value_model

if TYPE_CHECKING:
    from learners.backbone_pretrain import FrameLatents  # imports this module

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
# Which pretrained backbone this learner's refits start from, kept beside its versions: a learner process that
# Ray restarts (or a resumed run) goes on from the same backbone instead of a random one.
BACKBONE_FILE = "backbone.json"
MODES = ("refit", "continual")
NAN_POLICIES = ("raise", "skip")


@dataclass
class ValueLearnerConfig:
    """One value learner (one checkpoint root), composed by Hydra from ``configs/learner/value.yaml``."""

    store_url: str = ""
    """Replay store to train on and to label."""
    checkpoint_root: str = "runs/value_model"
    """Published versions go to <root>/v000001, ...; the resumable training state to <root>/train_state/."""
    mode: str = "refit"
    """``refit``: one fit per round on all labelled data so far; ``continual``: keep training as data streams in."""
    steps: int = 2000
    """Gradient steps of one refit."""
    continual_chunk_steps: int = 200
    """Continual mode: steps between index refreshes; a version is published after each chunk."""
    continual_poll_s: float = 5.0
    """Continual mode: wait between looks at an empty store."""
    batch_size: int = 32
    """Frames (ViVa, static) or windows (WVM) per gradient step."""
    learning_rate: float = 1e-4
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 10% in refit; constant in continual)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warm-up."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""
    checkpoint_every: int = 200
    """Steps between training-state checkpoints (a crashed learner resumes from the last one); 0: never."""
    warm_start: bool = False
    """Start each refit from the latest published version instead of a fresh (pretrained-backbone) model."""
    warm_start_steps: int = 0
    """Gradient steps of a warm-started refit (0: ``steps``): continuing from the last version needs fewer."""
    device: str = "auto"
    """Training device: ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    nan_policy: str = "raise"
    """Non-finite loss/gradient: ``raise`` stops at once; ``skip`` drops the batch, raising after
    ``max_nonfinite_skips`` in a row. Either way no broken model is ever published."""
    max_nonfinite_skips: int = 5
    """``nan_policy=skip``: consecutive non-finite batches tolerated."""
    holdout_fraction: float = 0.0
    """Fraction of labelled episodes (a stable split by episode id) kept out of training, so that the model's
    quality is measured on episodes it never saw (the main job holds out 15%); evaluation episodes are never
    trained on either."""
    task_names: list[str] = field(default_factory=list)
    """Replay task names in the order of ``valuemodel.tasks`` (the instructions); empty: the same strings."""
    failure_penalty: float | None = None
    """C_fail of the value target in steps; None: the task's L_max (see valuemodel.targets)."""
    time_limit: int = 0
    """Episode time limit in steps, a floor for every task's L_max; 0: L_max is the longest episode seen."""
    wvm_frame_stride: int = 2
    """WVM: control steps between window frames; 2 at 10 Hz is 5 fps.

    The paper samples 2 fps (5 here); the simulator's retry undoes a stage in under 2 s, which 2 fps windows and
    their overlapping chunks average away (RESULTS.md, value-models-timescales). Pick it so that the shortest
    event you want the value to follow spans several frames."""
    cache_latents: bool = True
    """Keep VAE latents per (episode, step, camera): the frozen VAE is the CPU bottleneck."""
    latent_cache_frames: int = 200_000
    """Latent cache capacity in (frame, camera) entries (LRU)."""
    loader_workers: int = 0
    """DataLoader worker processes (0 reads in the training process)."""
    label_key: str = "{kind}-v{version:06d}"
    """Derived-column key of the values of a version: a format string with ``{version}`` and ``{kind}``."""
    label_batch_size: int = 64
    """Frames per inference batch when labelling."""
    label_stride: int = 1
    """Labelling runs the model on every ``label_stride``-th step and interpolates between (ViVa, static; WVM
    always runs every window): 1 on a GPU; larger on a CPU, where encoding every frame dominates."""
    seed: int = 0
    """Seed of initialisation, sampling order and flow-matching noise."""
    log_every: int = 100
    """Steps between log lines; 0: silent."""
    distributed: str = "none"
    """``none`` (one process), ``ddp`` or ``fsdp`` through Ray Train's TorchTrainer (learners.value_actor)."""
    train_workers: int = 1
    """Ray Train workers for ``ddp``/``fsdp`` (one per GPU)."""
    gpus_per_worker: float = 1.0
    """GPUs per learner actor / Ray Train worker when the cluster has GPUs (CPU otherwise)."""

    def __post_init__(self) -> None:
        self.task_names = [str(t) for t in self.task_names]
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        if self.distributed not in ("none", "ddp", "fsdp"):
            raise ValueError(f"distributed must be none, ddp or fsdp, got {self.distributed!r}")
        if self.steps < 1 or self.batch_size < 1 or self.continual_chunk_steps < 1:
            raise ValueError("steps, batch_size and continual_chunk_steps must be positive")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the learner stopped and published nothing from it."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def learning_rate_factor(step: int, warmup: int, total: int | None) -> float:
    """Linear warm-up, then cosine decay to 10% over ``total`` steps (constant when ``total`` is None)."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None:
        return 1.0
    progress = min((step - warmup) / max(1, total - warmup), 1.0)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def vae_fingerprint(model: torch.nn.Module) -> str:
    """Identifies the frozen VAE's weights, so cached latents are reused only with the VAE that made them."""
    vae = getattr(model, "vae", None)
    if vae is None:
        return ""
    total = sum(
        float(p.detach().double().sum()) + float(p.detach().double().abs().max()) for p in vae.parameters()
    )
    return f"{type(vae).__name__}:{total:.12e}"


class LossModule(torch.nn.Module):
    """The model's loss as ``forward``, so DDP/FSDP wrappers (which hook ``forward``) see every training call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        kwargs = {} if self.model.config.kind == "static" else {"generator": generator}
        return self.model.loss(batch, **kwargs)


def robot_mismatches(model_config: ValueModelConfig, store: ReplayStore) -> list[str]:
    """How the model's inputs differ from what the robot recorded in ``store`` (its schema is the robot's spec).
    A static model would fail on a shape deep in its first step, and ViVa, which pads the state to fill a latent
    frame, would not fail at all, so callers check this first."""
    schema, problems = store.schema, []
    missing = [c for c in model_config.cameras if c not in schema.camera_names]
    if missing:
        problems.append(
            f"it reads cameras {missing}, which the robot recorded in {store.location.url} does not have (its "
            f"cameras: {list(schema.camera_names)})"
        )
    if model_config.state_dim != schema.state_dim:
        problems.append(
            f"its state_dim is {model_config.state_dim}, but the robot recorded in {store.location.url} has "
            f"{schema.state_dim} state values ({', '.join(schema.state_names)})"
        )
    return problems


def check_model_fits_store(model_config: ValueModelConfig, store: ReplayStore) -> None:
    """Refuse, before any training, a value model the store's robot cannot feed."""
    problems = robot_mismatches(model_config, store)
    if problems:
        raise ValueError(
            f"valuemodel does not fit the robot: {'; '.join(problems)}. Set valuemodel.cameras to some of the "
            "robot's cameras and valuemodel.state_dim to its width, or leave them to the robot ([] and 0)"
        )


def labelled_filter(holdout_fraction: float = 0.0, up_to_round: int | None = None) -> EpisodeFilter:
    """The episodes a value model trains on: labelled (unlabelled ones have no target), not evaluation episodes,
    and not the held-out split its quality is judged on (``learners.value_quality``); with ``up_to_round``, only
    rounds 0 to it (a round's refit, while the arms may already record the next round's rollouts)."""
    return EpisodeFilter(
        outcomes=(Outcome.SUCCESS, Outcome.FAILURE),
        purposes=TRAINING_PURPOSES,
        split="train",
        holdout_fraction=holdout_fraction,
        rounds=None if up_to_round is None else tuple(range(up_to_round + 1)),
    )


class ValueLearner:
    """Trains, publishes and labels with one value model; one checkpoint root per learner."""

    def __init__(
        self,
        config: ValueLearnerConfig,
        model_config: ValueModelConfig,
        *,
        model_factory: Callable[[ValueModelConfig], Any] = build_value_model,
        rank: int = 0,
        wrap_loss: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    ) -> None:
        """``rank``/``wrap_loss`` are set by the Ray Train loop (learners.value_actor): every rank trains on its
        own sample stream through the wrapped (DDP/FSDP) loss; only rank 0 writes checkpoints and versions."""
        self.config = config
        self.model_factory = model_factory
        self.rank = rank
        self.wrap_loss = wrap_loss
        self.store = ReplayStore.open(config.store_url)
        # The store's schema is the robot's spec: it fills in what the model config leaves to the robot.
        model_config = model_config.with_robot_spec(
            self.store.schema.camera_names, self.store.schema.state_dim
        )
        check_model_fits_store(model_config, self.store)
        self.model_config = model_config
        self.device = resolve_device(config.device)
        self.root = Path(config.checkpoint_root)
        self.state_path = self.root / "train_state" / STATE_FILE
        chosen = self.root / BACKBONE_FILE
        if not model_config.pretrained_dir and chosen.is_file():
            self.model_config = model_config = replace(
                model_config, pretrained_dir=json.loads(chosen.read_text())["pretrained_dir"]
            )
            check_model_fits_store(model_config, self.store)
        self.task_names = list(config.task_names) or list(model_config.tasks)
        self._cache: LatentCache | None = None
        self._cache_owner = ""
        self.model: Any = None
        self.metrics: dict[str, float] = {}
        # Gets the loss, learning rate and data-wait share every log_every steps and each version published (the
        # actor's W&B run); steps count across refits, so each refit continues one curve.
        self.on_metrics: Callable[[dict[str, float]], None] = lambda metrics: None
        self.total_steps = 0

    # ---- versions and labels ---------------------------------------------------------------------------------

    def latest_version(self) -> int | None:
        versions = list_versions(self.root)
        return versions[-1] if versions else None

    def label_key(self, version: int) -> str:
        return self.config.label_key.format(version=version, kind=self.model_config.kind)

    def label(
        self,
        version: int | None = None,
        *,
        overwrite: bool = False,
        episode_filter: EpisodeFilter | None = None,
        episode_ids: list[str] | None = None,
    ) -> int:
        """Write the values of ``version`` (default: the latest) for every committed episode that lacks them (of
        those ``episode_filter`` accepts, or of ``episode_ids``); returns how many episodes were labelled.
        Recorded data is never touched."""
        version = self.latest_version() if version is None else version
        if version is None:
            raise FileNotFoundError(f"no published value-model version under {self.root} to label with")
        folder = version_dir(self.root, version)
        model = load_checkpoint(folder, device=self.device).eval()
        stats = ValueDataStats.from_dict(load_norm_stats(folder))
        key = self.label_key(version)
        done = set() if overwrite else self.store.derived_episode_ids("value", key)
        if episode_ids is None:
            index = FrameIndex(self.store, episode_filter or EpisodeFilter())
            index.refresh()
            episode_ids = sorted(index.records)
        todo = [e for e in episode_ids if e not in done]
        predict = self.predictor(model, stats)
        for episode_id in todo:
            self.store.write_derived("value", key, episode_id, predict(episode_id))
        log.info("labelled %d episodes with value model v%06d (key %s)", len(todo), version, key)
        return len(todo)

    def quality(self, version: int, floor: ValueFloorConfig, up_to_round: int | None = None) -> ValueQuality:
        """Held-out quality of a labelled ``version`` against ``floor`` (``learners.value_quality``), on rounds 0
        to ``up_to_round`` only when it is given."""
        stats = ValueDataStats.from_dict(load_norm_stats(version_dir(self.root, version)))
        records = held_out_episodes(
            self.store, self.config.holdout_fraction, floor.eval_episodes, up_to_round
        )
        self.label(version, episode_ids=[r.meta.episode_id for r in records])
        return assess_values(
            self.store,
            self.label_key(version),
            records,
            stats.max_episode_length,
            stats.failure_penalty,
            floor,
        )

    def use_backbone(self, pretrained_dir: str) -> None:
        """Start later refits from the video backbone in ``pretrained_dir`` (the round-0 pretraining's output)."""
        self.model_config = replace(self.model_config, pretrained_dir=str(pretrained_dir))
        check_model_fits_store(self.model_config, self.store)
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".{BACKBONE_FILE}.tmp-{os.getpid()}"
            staging.write_text(json.dumps({"pretrained_dir": str(pretrained_dir)}))
            os.replace(staging, self.root / BACKBONE_FILE)

    def prime_latent_cache(self, frames: FrameLatents) -> int:
        """Fill the latent cache with the backbone pretraining's latents of its frames (``use_backbone`` first), so
        the first fit does not encode them again; returns how many frames went in (0 when the model would encode
        them otherwise: not ViVa, other cameras, another image size than the model's or the store's, a VAE not in
        float32, or no cache)."""
        model = self._new_model(warm_start=False)
        cache = self._latent_cache(model)
        config = model.config
        vae_dtypes = (
            {p.dtype for p in model.vae.parameters()} if getattr(model, "vae", None) is not None else set()
        )
        if (
            cache is None
            or config.kind != "viva"
            or not set(config.cameras) <= set(frames.cameras)
            or (config.image_height, config.image_width) != tuple(frames.image_size)
            # Pretraining resized frames of another size and rounded them to uint8; the model resizes in float.
            or any(
                (camera.height, camera.width) != tuple(frames.image_size)
                for camera in self.store.schema.cameras
                if camera.name in config.cameras
            )
            or vae_dtypes != {torch.float32}
        ):
            return 0
        columns = [frames.cameras.index(c) for c in config.cameras]
        for row, (episode_id, step) in enumerate(frames.keys):
            for camera, column in zip(config.cameras, columns, strict=True):
                cache.add(episode_id, step, camera, frames.latents[row, column].clone())
        return len(frames.keys)

    def predictor(self, model: Any, stats: ValueDataStats) -> Callable[[str], np.ndarray]:
        """episode id -> (T,) predicted values in the model range, batched; shares the latent cache."""
        cache = self._latent_cache(model)
        return episode_predictor(
            self.store,
            model,
            stats,
            batch_size=self.config.label_batch_size,
            cache=cache,
            step_stride=self.config.label_stride,
        )

    def _latent_cache(self, model: Any) -> LatentCache | None:
        """The learner's latent cache if ``model`` has a VAE and caching is on; a new VAE gets a new cache."""
        if not self.config.cache_latents or model.config.kind == "static":
            return None
        owner = vae_fingerprint(model)
        if self._cache is None or owner != self._cache_owner:
            self._cache, self._cache_owner = LatentCache(self.config.latent_cache_frames), owner
        return self._cache

    def _new_model(self, warm_start: bool) -> Any:
        torch.manual_seed(self.config.seed)
        latest = self.latest_version()
        if warm_start and latest is not None:
            return load_checkpoint(version_dir(self.root, latest), device=self.device)
        return self.model_factory(self.model_config).to(self.device)

    def _stats(self, index: FrameIndex) -> ValueDataStats:
        return compute_value_stats(
            list(index.records.values()),
            self.task_names,
            horizon=self.model_config.horizon,
            frame_stride=self.config.wvm_frame_stride,
            failure_penalty=self.config.failure_penalty,
            time_limits={t: self.config.time_limit for t in self.task_names}
            if self.config.time_limit
            else None,
        )

    def _loader(self, sampler: FrameSampler, stats: ValueDataStats, cached: bool) -> Any:
        dataset = frame_dataset(self.store, self.model_config, stats, cached=cached, training=True)
        return make_loader(
            dataset, sampler, batch_size=self.config.batch_size, num_workers=self.config.loader_workers
        )

    # ---- training state ------------------------------------------------------------------------------------------

    def _save_state(self, run: TrainingRun) -> None:
        state = run.state_dict()  # on every rank: gathering FSDP shards is collective
        if self.rank != 0:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.state_path.with_suffix(f".tmp-{os.getpid()}")
        torch.save(state, staging)
        os.replace(staging, self.state_path)

    def _load_state(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        return torch.load(self.state_path, map_location="cpu", weights_only=False)

    def _start_run(
        self,
        mode: str,
        round_index: int,
        total_steps: int | None,
        saved: dict[str, Any] | None,
        up_to_round: int | None = None,
    ) -> TrainingRun:
        index = FrameIndex(self.store, labelled_filter(self.config.holdout_fraction, up_to_round))
        if saved is not None:
            model = self.model_factory(ValueModelConfig.from_dict(saved["model_config"])).to(self.device)
            run = TrainingRun(self, model, index, mode, round_index, total_steps, saved["target_version"])
            run.load_state_dict(saved)
            log.info("resuming %s value training of round %d at step %d", mode, round_index, run.step)
            return run
        if index.refresh() == 0 and mode == "refit":
            raise ValueError(
                f"store {self.config.store_url} has no labelled (success/failure) episodes to fit"
            )
        model = self._new_model(self.config.warm_start)
        target = (self.latest_version() or 0) + 1 if mode == "refit" else None
        run = TrainingRun(self, model, index, mode, round_index, total_steps, target)
        if mode == "refit":
            run.stats = self._stats(index)
        return run

    # ---- the two modes -----------------------------------------------------------------------------------------------

    def refit(self, round_index: int, up_to_round: bool = False) -> int:
        """Fit a value model on every labelled episode so far and publish it; returns the version number.
        ``up_to_round``: only on episodes of rounds 0 to ``round_index`` (the round driver's refit, while its arms
        may already record the next round's rollouts).

        Resumes an interrupted refit of the same round from its last training checkpoint; calling it again for a
        round already published returns that version without retraining."""
        saved = self._load_state()
        if saved is not None and (saved["mode"], saved["round"]) == ("refit", round_index):
            if saved["published"]:
                return int(saved["target_version"])
        else:
            saved = None
        steps = self.config.steps
        if saved is not None:
            steps = int(saved["total_steps"]) if "total_steps" in saved else steps
        elif self.config.warm_start and self.config.warm_start_steps and self.latest_version() is not None:
            steps = self.config.warm_start_steps
        run = self._start_run("refit", round_index, steps, saved, round_index if up_to_round else None)
        self.model = run.model
        run.train(steps)
        version = run.publish(run.target_version)
        run.published = True
        self._save_state(run)
        return version

    def run_continual(
        self, should_stop: Callable[[], bool] = lambda: False, max_chunks: int | None = None
    ) -> list[int]:
        """Train in chunks of ``continual_chunk_steps`` while episodes stream in, publishing after each chunk,
        until ``should_stop()`` or ``max_chunks``; returns the versions published."""
        saved = self._load_state()
        saved = (
            saved if saved is not None and saved["mode"] == "continual" and not saved["published"] else None
        )
        run = self._start_run("continual", 0, None, saved)
        self.model = run.model
        published: list[int] = []
        chunks = 0
        while not should_stop() and (max_chunks is None or chunks < max_chunks):
            if not run.mid_chunk():
                if run.index.refresh() == 0:
                    time.sleep(self.config.continual_poll_s)
                    continue
                run.begin_chunk(self._stats(run.index))
            run.train(run.chunk_end, should_stop)
            if run.step < run.chunk_end:
                break
            published.append(run.publish((self.latest_version() or 0) + 1))
            self._save_state(run)
            chunks += 1
        return published


class TrainingRun:
    """One refit, or one continual session: model, optimiser, sampler and counters, checkpointed together."""

    def __init__(
        self, learner: ValueLearner, model: Any, index: FrameIndex, mode: str, round_index: int,
        total_steps: int | None, target_version: int | None,
    ) -> None:  # fmt: skip
        cfg = learner.config
        self.learner, self.model, self.index, self.mode = learner, model, index, mode
        self.round, self.total_steps, self.target_version = round_index, total_steps, target_version
        self.step, self.chunk_end, self.published = 0, 0, False
        self.nonfinite_skips = 0
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: learning_rate_factor(s, cfg.warmup_steps, total_steps)
        )
        self.generator = torch.Generator(learner.device).manual_seed(cfg.seed + learner.rank)
        self.loss_module = LossModule(model)
        if learner.wrap_loss is not None:
            self.loss_module = learner.wrap_loss(self.loss_module)
        samples = cfg.continual_chunk_steps * cfg.batch_size if mode == "continual" else None
        self.sampler = FrameSampler(
            index,
            seed=cfg.seed + round_index + 1000 * learner.rank,
            refresh_each_epoch=False,
            samples_per_epoch=samples,
        )
        self.stats: ValueDataStats | None = None
        self._iterator: Iterator[dict[str, Any]] | None = None
        self._adapter: ValueBatchAdapter | None = None

    def state_dict(self) -> dict[str, Any]:
        keep_weights = not self.published
        return {
            "mode": self.mode, "round": self.round, "step": self.step, "chunk_end": self.chunk_end,
            "total_steps": self.total_steps,
            "target_version": self.target_version, "published": self.published,
            "model_config": self.model.config.to_dict(),
            "model": self.model_state() if keep_weights else None,
            "optimizer": self.optimizer.state_dict() if keep_weights else None,
            "schedule": self.schedule.state_dict(), "sampler": self.sampler.state_dict(),
            "stats": None if self.stats is None else self.stats.to_dict(),
            "generator": self.generator.get_state(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.sampler.load_state_dict(state["sampler"])
        self.stats = None if state["stats"] is None else ValueDataStats.from_dict(state["stats"])
        self.generator.set_state(state["generator"])
        self.step, self.chunk_end = int(state["step"]), int(state["chunk_end"])

    def mid_chunk(self) -> bool:
        return self.step < self.chunk_end

    def begin_chunk(self, stats: ValueDataStats) -> None:
        self.stats, self._adapter = stats, None
        self.chunk_end = self.step + self.learner.config.continual_chunk_steps
        self._iterator = None  # the next pass over the refreshed index is a new sampler epoch

    def batches(self) -> Iterator[dict[str, Any]]:
        assert self._adapter is not None and self.stats is not None
        loader = self.learner._loader(self.sampler, self.stats, cached=self._adapter.cache is not None)
        while True:
            yield from loader
            if self.mode == "continual":
                return

    def train(self, until_step: int, should_stop: Callable[[], bool] = lambda: False) -> None:
        cfg, model = self.learner.config, self.model
        assert self.stats is not None
        if self._adapter is None:
            cache = self.learner._latent_cache(model)
            self._adapter = batch_adapter(self.learner.store, model, self.stats, cache)
        if self._iterator is None:
            self._iterator = self.batches()
        model.train()
        timing = LoopTiming()
        start_step, losses = self.step, []
        while self.step < until_step and not should_stop():
            t0 = time.perf_counter()
            raw = next(self._iterator, None)
            if raw is None:
                self._iterator = self.batches()
                continue
            batch = self._adapter(raw).to(self.learner.device)
            t1 = time.perf_counter()
            out = self.loss_module(batch, self.generator)
            if self._nonfinite(out["loss"], out, raw):
                continue
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.grad_clip
            )
            if self._nonfinite(grad_norm, out, raw):
                continue
            self.optimizer.step()
            self.schedule.step()
            self.step += 1
            losses.append(out["loss"].item())
            timing.add(t0, t1, time.perf_counter())
            self.learner.total_steps += 1
            if cfg.log_every and self.step % cfg.log_every == 0:
                recent = float(np.mean(losses[-cfg.log_every :]))
                log.info("value step %d loss %.4f", self.step, recent)
                self.learner.on_metrics(
                    {
                        "value/loss": recent,
                        "value/learning_rate": self.optimizer.param_groups[0]["lr"],
                        "value/data_wait_fraction": timing.data_wait_fraction,
                        "value/train_step": self.learner.total_steps,
                    }
                )
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.learner._save_state(self)
        steps = self.step - start_step
        self.learner.metrics = {
            "steps": float(steps),
            "loss": float(np.mean(losses[-50:])) if losses else float("nan"),
            "data_wait_fraction": timing.data_wait_fraction,
            "samples_per_s": timing.samples_per_s(steps, cfg.batch_size),
        }

    def _nonfinite(self, value: torch.Tensor, losses: dict[str, torch.Tensor], raw: dict[str, Any]) -> bool:
        """False for a finite value; True to skip the batch (nan_policy "skip"); raises otherwise."""
        if bool(torch.isfinite(value).all()):
            self.nonfinite_skips = 0
            return False
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_skips += 1
        cfg = self.learner.config
        if cfg.nan_policy == "skip" and self.nonfinite_skips <= cfg.max_nonfinite_skips:
            log.warning("non-finite loss or gradient at step %d; batch skipped", self.step)
            return True
        parts = {k: float(v.detach()) for k, v in losses.items()}
        episodes = sorted(set(raw.get("episode_id") or raw.get("key_episode") or []))[:5]
        raise NonFiniteLossError(
            f"value training hit a non-finite loss/gradient at step {self.step} (losses {parts}, episodes "
            f"{episodes}); stopped without publishing. The last good training checkpoint is {self.learner.state_path}"
        )

    def model_state(self) -> dict[str, torch.Tensor]:
        """The full model state dict; under FSDP gathered from the shards (collective: call on every rank)."""
        if self.learner.config.distributed != "fsdp" or self.learner.wrap_loss is None:
            return self.model.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(
            self.loss_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        return {
            k.split("model.", 1)[1] if k.startswith(("model.", "module.model.")) else k: v
            for k, v in full.items()
        }

    def exportable_model(self) -> Any:
        """A plain model holding the full weights, for ``save_checkpoint`` (a CPU copy under FSDP)."""
        if self.learner.config.distributed != "fsdp" or self.learner.wrap_loss is None:
            return self.model
        state = self.model_state()
        copy = self.learner.model_factory(self.model.config)
        copy.load_state_dict(state)
        return copy

    def publish(self, version: int | None) -> int:
        """Write the model as ``version``; a version that already exists (published before a crash) is kept."""
        assert version is not None and self.stats is not None
        model = self.exportable_model()
        if self.learner.rank != 0:
            return version
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"refusing to publish a value model with non-finite parameters {bad[:5]}"
            )
        if version in list_versions(self.learner.root):
            return version
        self.stats.provenance = {
            "mode": self.mode, "round": self.round, "steps": self.step,
            "episodes": len(self.index.episode_ids), "frames": len(self.index), "published_at": time.time(),
        }  # fmt: skip
        save_checkpoint(model, self.learner.root, version, self.stats.to_dict())
        log.info("published value model v%06d after %d steps on %d episodes", version, self.step,
                 len(self.index.episode_ids))  # fmt: skip
        self.learner.on_metrics(
            {
                "value/published_version": version,
                "value/train_step": self.learner.total_steps,
                "value/episodes": len(self.index.episode_ids),
                "round": self.round,
            }
        )
        return version


def main(argv: list[str] | None = None) -> int:
    """``python -m learners.value_learner refit|continual|label``: one learner from JSON configs (ops, tests)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m learners.value_learner", description=main.__doc__)
    parser.add_argument("command", choices=("refit", "continual", "label"))
    parser.add_argument("--learner-config", required=True, help="JSON of ValueLearnerConfig fields")
    parser.add_argument("--model-config", required=True, help="JSON of ValueModelConfig fields")
    parser.add_argument("--round", type=int, default=0, help="refit: the round being fitted")
    parser.add_argument("--version", type=int, default=None, help="label: version (default: latest)")
    parser.add_argument("--max-chunks", type=int, default=None, help="continual: stop after this many chunks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ValueLearnerConfig(**json.loads(Path(args.learner_config).read_text()))
    learner = ValueLearner(config, ValueModelConfig.load_json(args.model_config))
    if args.command == "refit":
        print(json.dumps({"version": learner.refit(args.round), **learner.metrics}))
    elif args.command == "continual":
        print(json.dumps({"versions": learner.run_continual(max_chunks=args.max_chunks)}))
    else:
        print(json.dumps({"labelled": learner.label(args.version)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
