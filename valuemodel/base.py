"""Shared save/load and device plumbing of the value models (the ``ValueModel`` protocol's file half)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from valuemodel.config import ValueModelConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

ModelT = TypeVar("ModelT", bound="ValueModelBase")


class ValueModelBase(nn.Module):
    """An ``nn.Module`` with a ``ValueModelConfig`` that saves as config.json + model.safetensors.

    Subclasses take ``(config, load_weights=True)``; ``load`` passes ``load_weights=False`` so that pretrained
    weights are not read from ``pretrained_dir`` only to be overwritten by the checkpoint.
    """

    kind: str = ""

    def __init__(self, config: ValueModelConfig) -> None:
        super().__init__()
        if self.kind and config.kind != self.kind:
            raise ValueError(f"{type(self).__name__} needs config.kind == {self.kind!r}, got {config.kind!r}")
        open_fields = config.left_to_robot()
        if open_fields:
            names = " and ".join(f"valuemodel.{name}" for name in open_fields)
            raise ValueError(
                f"{names} {'is' if len(open_fields) == 1 else 'are'} left to the robot's spec, so this "
                "model cannot be built yet: build it from config.with_robot_spec(camera names, state width) (the "
                "value learner does so from its replay store), or set them"
            )
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save_json(directory / CONFIG_FILE)
        # save_model de-duplicates shared tensors, which plain save_file refuses.
        save_model(self, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls: type[ModelT], directory: str | Path, device: str | torch.device = "cpu") -> ModelT:
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a saved value model: {name} is missing")
        config = ValueModelConfig.load_json(directory / CONFIG_FILE)
        model = cls.architecture(config, directory)
        load_model(model, str(directory / WEIGHTS_FILE), strict=True, device=str(device))
        return model.to(device)

    @classmethod
    def architecture(cls: type[ModelT], config: ValueModelConfig, directory: Path) -> ModelT:
        """The untrained model that the checkpoint in ``directory`` loads its weights into."""
        return cls(config, load_weights=False)
