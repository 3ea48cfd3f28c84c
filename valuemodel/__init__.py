"""valuemodel: value functions for RECAP-style improvement, all behind one ``ValueModel`` protocol.

Models (``config.kind``): ``ViVaModel`` (video-generative value model on Wan2.2 TI2V), ``WorldValueModel`` (WVM:
a value stream on the Wan video DiT) and ``StaticValueModel`` (CNN + MLP snapshot baseline). Each takes a
``ValueModelConfig``, trains with ``loss(ValueBatch) -> dict``, infers with ``predict(ValueBatch) ->
ValuePrediction`` and saves/loads as safetensors + config JSON; ``build_value_model`` picks the class.

Around them: ``targets`` (episode outcome -> value targets, higher is better), ``metrics`` (VOC, Pearson/Spearman,
Hesitation-RMSE, Retry-VOC, milestone/error detection), ``plots`` (value curves to PNG), ``checkpoint``
(versioned checkpoints with norm stats), ``latents``/``flow`` (ViVa's frame injection and flow matching, pure
functions), ``backbone`` (Wan transformer/VAE/T5 per size; diffusers is imported only when a model is built) and
``synthetic`` (progress-video episodes for tests and benchmarks). Depends on no other vivarl package but
``checkpoints`` (the shared versioned-folder layout) and ``robot_io.images`` (the one letterbox rule).
"""

from valuemodel.checkpoint import CheckpointError, load_checkpoint, load_norm_stats, save_checkpoint
from valuemodel.config import ValueModelConfig
from valuemodel.factory import build_value_model
from valuemodel.interface import ValueBatch, ValueModel, ValuePrediction
from valuemodel.static import StaticValueModel
from valuemodel.targets import UnlabelledEpisodeError, episode_value_targets
from valuemodel.viva import ViVaModel
from valuemodel.wvm import WorldValueModel

__all__ = [
    "CheckpointError",
    "StaticValueModel",
    "UnlabelledEpisodeError",
    "ValueBatch",
    "ValueModel",
    "ValueModelConfig",
    "ValuePrediction",
    "ViVaModel",
    "WorldValueModel",
    "build_value_model",
    "episode_value_targets",
    "load_checkpoint",
    "load_norm_stats",
    "save_checkpoint",
]
