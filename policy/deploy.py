"""``Policy``: a trained model plus its normalisation, behind the actors' ``ActionSource`` protocol.

``reset(seed)`` starts an episode; ``act(observation)`` returns one absolute action in robot units. Internally it
predicts a chunk of H actions and either executes ``execute_steps`` of them open-loop before predicting again,
or (``temporal_ensemble`` > 0) predicts every step and averages every chunk's prediction for the current step
with ACT's weights exp(-m i), oldest first. At deployment the advantage indicator is fixed to
``config.deploy_indicator`` ("positive" for RECAP); unconditioned policies always see "dropped".
``discard_plan()`` drops the planned actions when a corrector takes over mid-episode.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policy.base import Normalizer, PolicyInputs, PolicyModel, images_to_float
from policy.conditioning import DROPPED, TOKEN_OF
from policy.config import PolicyConfig
from robot_io.spec import Observation


class Policy:
    """See the module docstring. ``labelling_run`` names the advantage labels it was trained on (if any)."""

    def __init__(
        self,
        model: PolicyModel,
        normalizer: Normalizer,
        *,
        labelling_run: str | None = None,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.normalizer = normalizer
        self.labelling_run = labelling_run
        self.version = version
        self.metadata = dict(metadata or {})
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._queue: deque[np.ndarray] = deque()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()
        self._step = 0

    @property
    def config(self) -> PolicyConfig:
        return self.model.config

    @property
    def deploy_token(self) -> int:
        if not self.config.advantage_conditioned:
            return DROPPED
        return TOKEN_OF[self.config.deploy_indicator]

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Policy:
        """The policy of a checkpoint version folder, or of the newest version under a checkpoint root."""
        from policy.checkpoint import load_policy

        return load_policy(path, device=device)

    def reset(self, seed: int | None = None) -> None:
        self._generator.manual_seed(self.config.seed if seed is None else self.config.seed + int(seed))
        self._step = 0
        self.discard_plan()

    def discard_plan(self) -> None:
        """Forget every action planned so far, so that the next ``act`` predicts from its own observation.

        The episode loop calls it when the corrector takes over: the queued chunk and the ensembled chunks were
        planned from where the arm was before, and replaying them after the hand-back would drag it back there.
        The episode's noise generator is left running, unlike in ``reset``: reseeding it here would make the
        samples after every hand-back repeat the noise the episode started with. A model's ``reset`` clears only
        inference state of the current plan (LeRobot's action and observation queues), so it is called too.
        """
        self._queue.clear()
        self._chunks.clear()
        reset_model = getattr(self.model, "reset", None)
        if reset_model is not None:
            reset_model()

    def act(self, observation: Observation) -> np.ndarray:
        if self.config.temporal_ensemble > 0:
            action = self._ensembled_action(observation)
        else:
            if not self._queue:
                chunk = self.predict_chunks([observation])[0]
                self._queue.extend(chunk[: self.config.execute_steps])
            action = self._queue.popleft()
        self._step += 1
        return action.astype(np.float32)

    def _ensembled_action(self, observation: Observation) -> np.ndarray:
        horizon = self.config.chunk_size
        self._chunks.append((self._step, self.predict_chunks([observation])[0]))
        while self._chunks and self._chunks[0][0] + horizon <= self._step:
            self._chunks.popleft()
        predictions = np.stack([chunk[self._step - start] for start, chunk in self._chunks])
        weights = np.exp(-self.config.temporal_ensemble * np.arange(len(predictions)))
        return (weights[:, None] * predictions).sum(0) / weights.sum()

    def inputs(self, observations: list[Observation], token: int | None = None) -> PolicyInputs:
        """Normalised model inputs of a list of observations, with the deployment indicator by default."""
        device = next(self.model.parameters()).device
        images = {
            cam: images_to_float(
                torch.as_tensor(np.stack([o.images[cam] for o in observations])),
                self.config.image_size,
                self.config.image_fit,
            ).to(device)
            for cam in self.config.cameras
        }
        state = self.normalizer.state(torch.as_tensor(np.stack([o.state for o in observations]))).to(device)
        indicator = torch.full(
            (len(observations),), self.deploy_token if token is None else token, device=device
        )
        return PolicyInputs(images=images, state=state, indicator=indicator)

    @torch.no_grad()
    def predict_chunks(self, observations: list[Observation], token: int | None = None) -> np.ndarray:
        """(B, H, A) absolute action chunks in robot units."""
        inputs = self.inputs(observations, token)
        beta = self.config.cfg_beta if self.config.advantage_conditioned else 1.0
        chunk = self.normalizer.unaction(
            self.model.predict_chunk(inputs, cfg_beta=beta, generator=self._generator).cpu()
        ).numpy()
        dims = self.config.relative_action_dims
        if dims:
            # Offsets from the state measured with this observation, back to the absolute targets the robot takes.
            state = np.stack([o.state for o in observations]).astype(np.float32)
            chunk[..., dims] += state[:, None, self.config.state_dims_of_relative]
        return chunk
