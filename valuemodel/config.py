"""The one config dataclass of the value models (ViVa, WVM, static baseline).

Composed by Hydra from ``configs/valuemodel/*.yaml`` (wired by the lead) or built in code with
``ValueModelConfig.preset(size, kind, ...)``. It is stored as JSON beside every checkpoint, so a checkpoint can be
rebuilt without the training run's config tree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

KINDS = ("viva", "wvm", "static")
SIZES = ("tiny", "mid", "wan2.2-ti2v-5b")
TEXT_ENCODERS = ("table", "t5")
DTYPES = ("float32", "bfloat16", "float16")

# Image sizes each backbone size expects by default (height, width). The 5B VAE compresses 16x spatially, so
# 384x320 gives 24x20 latents, the layout the ViVa paper uses.
DEFAULT_IMAGE_SIZE = {"tiny": (64, 64), "mid": (128, 128), "wan2.2-ti2v-5b": (384, 320)}

# Fields only some kinds read; every kind reads the rest. A model is what its kind reads (``kind_fields``), so a
# static baseline trained while WVM's rewinding had another default is the same static baseline.
WAN_FIELDS = (
    "pretrained_dir", "random_weights", "text_encoder", "text_len", "shift", "num_train_timesteps",
    "num_inference_steps", "inference_seed", "value_weight", "dtype", "transformer_overrides",
)  # fmt: skip
WVM_FIELDS = (
    "chunk", "prefix_frames", "video_loss_weight", "prefix_noise_prob", "rewind_prob", "value_stream_dim",
    "value_stream_heads",
)  # fmt: skip
KIND_FIELDS = {
    "viva": (*WAN_FIELDS, "future_state_weight"),
    "wvm": (*WAN_FIELDS, *WVM_FIELDS),
    "static": ("static_channels", "static_hidden"),
}


@dataclass
class ValueModelConfig:
    """Everything needed to build, train and reload one value model."""

    kind: str = "viva"
    """Which model: ``viva`` (video-generative value model), ``wvm`` (world value model), ``static`` (baseline)."""
    size: str = "tiny"
    """Backbone size: ``tiny`` (random init, CPU), ``mid`` (random init, GPU benchmarks) or ``wan2.2-ti2v-5b``."""
    pretrained_dir: str = ""
    """Local diffusers folder to load the backbone from; nothing is ever downloaded.

    ``wan2.2-ti2v-5b``: Wan2.2-TI2V-5B (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``). ``tiny`` and
    ``mid``: optional ``transformer/`` and ``vae/`` of that size (``vivarl-pretrain-backbone``); empty: random init."""
    random_weights: bool = False
    """Build the ``wan2.2-ti2v-5b`` architecture with random weights and no folder (benchmarks only)."""
    cameras: list[str] = field(default_factory=list)
    """Camera names in the order their latent frames are laid out. Empty: every camera the robot records, in its
    spec's order; the value learner fills them in from its store (``with_robot_spec``). Name some to use fewer."""
    state_dim: int = 0
    """Proprioception width; 0: the robot's, filled in like ``cameras``. States must be normalised to [-1, 1] by
    the caller (see checkpoint norm stats)."""
    image_height: int = 64
    """Height every camera image is resized/padded to before the VAE (aspect ratio kept, black padding)."""
    image_width: int = 64
    tasks: list[str] = field(default_factory=lambda: ["default"])
    """Task instructions; ``ValueBatch.task_id`` indexes this list. Each is embedded once and cached."""
    text_encoder: str = ""
    """``table`` (learned embedding per task) or ``t5`` (cached UMT5 embeddings); empty picks by size."""
    text_len: int = 0
    """Text tokens fed to cross-attention: table rows per task, or the T5 max length; 0 picks by size."""
    horizon: int = 50
    """Control steps between the state and the future state the model predicts (a data property; recorded here)."""
    shift: float = 5.0
    """Flow-matching timestep shift: sigma' = shift * s / (1 + (shift - 1) * s); larger means noisier training."""
    num_train_timesteps: int = 1000
    """Scale of the timestep fed to the transformer (sigma in [0, 1] times this), as Wan was trained."""
    num_inference_steps: int = 1
    """Euler steps from noise to the prediction; the ViVa paper uses one."""
    inference_seed: int = 0
    """Seed of the initial noise at inference, so that the same batch always gets the same value."""
    future_state_weight: float = 0.5
    """Loss weight of the future-state frame (ViVa)."""
    value_weight: float = 1.0
    """Loss weight of the value frame (ViVa) or of the value chunk (WVM)."""
    dtype: str = "float32"
    """Parameter dtype of the transformer and VAE."""
    transformer_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra WanTransformer3DModel kwargs on top of the size preset (tiny/mid only), for ablations."""

    # --- WVM ---
    chunk: int = 4
    """WVM value chunk h: values of the h current frames are predicted together; h future frames are generated."""
    prefix_frames: int = 1
    """WVM context frames before the current chunk; their values enter the value stream as a condition (the
    paper's design). 0: no value condition, each chunk from video alone; the tiny config's default, measured better
    on the simulator because a prefix anchors the curve to the model's own earlier, lagging values."""
    video_loss_weight: float = 1.0
    """WVM loss weight of the future-video flow loss (L = value_weight * L_value + this * L_video)."""
    prefix_noise_prob: float = 0.5
    """WVM prefix randomisation: probability, per sample, that the prefix values are replaced by U(-1, 1)."""
    rewind_prob: float = 0.3
    """WVM video rewinding: probability, per sample, that a window is made flat or reversed (half each).

    The paper names the three modes, not their odds. 2/3 (all three equally likely) was tried on the simulator: it
    ordered the inside of a retry better but detected fewer falls of progress (RESULTS.md, "WVM's rewinding at
    2/3"), so the default stays 0.3."""
    value_stream_dim: int = 0
    """WVM value-stream width; 0 picks by size (64 tiny, 256 mid, 512 5B)."""
    value_stream_heads: int = 4

    # --- static baseline ---
    static_channels: int = 32
    """Channels of the static baseline's first conv layer (doubled at each of its 4 stages)."""
    static_hidden: int = 256
    """Hidden width of the static baseline's MLP head."""

    def __post_init__(self) -> None:
        # Hydra hands ListConfig/DictConfig; make them plain so JSON and equality work.
        self.cameras = [str(c) for c in self.cameras]
        self.tasks = [str(t) for t in self.tasks]
        self.transformer_overrides = dict(self.transformer_overrides)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be unique names, got {self.cameras}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task instruction")
        if self.state_dim < 0:
            raise ValueError(f"state_dim must be positive (or 0: the robot's), got {self.state_dim}")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")
        if self.chunk < 1 or self.prefix_frames < 0:
            raise ValueError(
                f"chunk must be >= 1 and prefix_frames >= 0, got {self.chunk}, {self.prefix_frames}"
            )
        if not self.text_encoder:
            real = self.size == "wan2.2-ti2v-5b" and not self.random_weights
            self.text_encoder = "t5" if real else "table"
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}")
        if self.text_len <= 0:
            self.text_len = 512 if self.text_encoder == "t5" else 4
        if self.value_stream_dim <= 0:
            self.value_stream_dim = {"tiny": 64, "mid": 256, "wan2.2-ti2v-5b": 512}[self.size]
        if self.size == "wan2.2-ti2v-5b" and not self.pretrained_dir and not self.random_weights:
            raise ValueError(
                "size wan2.2-ti2v-5b needs pretrained_dir (or random_weights=true for benchmarks)"
            )

    @classmethod
    def preset(cls, size: str = "tiny", kind: str = "viva", **overrides: Any) -> ValueModelConfig:
        """A config with the image size that ``size`` expects; any field can be overridden."""
        if size not in DEFAULT_IMAGE_SIZE:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        height, width = DEFAULT_IMAGE_SIZE[size]
        values: dict[str, Any] = {"size": size, "kind": kind, "image_height": height, "image_width": width}
        values.update(overrides)
        return cls(**values)

    def with_robot_spec(self, camera_names: Sequence[str], state_dim: int) -> ValueModelConfig:
        """This config with what it leaves to the robot (no ``cameras``, ``state_dim`` 0) taken from the robot's
        spec: its camera names in order and its state width."""
        return replace(
            self, cameras=self.cameras or list(camera_names), state_dim=self.state_dim or state_dim
        )

    def left_to_robot(self) -> list[str]:
        """The fields still waiting for ``with_robot_spec``; a model cannot be built until there are none."""
        return [name for name in ("cameras", "state_dim") if not getattr(self, name)]

    @property
    def window_frames(self) -> int:
        """WVM frames per training window: prefix + h current + h future."""
        return self.prefix_frames + 2 * self.chunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def kind_fields(self) -> dict[str, Any]:
        """The fields this config's kind reads (``to_dict`` without the other kinds' fields)."""
        other_kinds = {name for kind, names in KIND_FIELDS.items() if kind != self.kind for name in names}
        unread = other_kinds.difference(KIND_FIELDS[self.kind])
        return {name: value for name, value in asdict(self).items() if name not in unread}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ValueModelConfig fields {unknown}")
        return cls(**data)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls, path: str | Path) -> ValueModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
