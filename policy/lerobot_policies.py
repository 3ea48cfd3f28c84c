"""RECAP conditioning for LeRobot's ACT and diffusion policies, behind vivarl's ``PolicyModel`` interface.

The advantage indicator enters as one extra proprioception feature appended to ``observation.state``: +1
positive, -1 negative, 0 dropped (so the dropped token is the unconditional model, as in the built-in policy).
Language policies (pi0, smolvla) take it as text instead: ``policy.conditioning.advantage_prompt``.

LeRobot's networks are used as they are (``ACTPolicy.model``, ``DiffusionPolicy.diffusion``); the losses are
recomputed here from their outputs so that per-frame weights (filtered BC, AWR) and action padding apply the
same way as for the built-in policy. Normalisation is vivarl's (``policy.base.Normalizer``), not LeRobot's
processors. Guidance: diffusion mixes the predicted noise of the conditional and unconditional passes at every
denoising step (true CFG); ACT mixes its one-shot action predictions (as the built-in L1 head does).
No pretrained backbone weights are loaded unless ``lerobot_overrides`` names them (nothing is downloaded).
"""

from __future__ import annotations

from typing import Any

import torch

from policy.base import PolicyInputs, PolicyModel, PolicyTargets, weighted_mean
from policy.conditioning import DROPPED, classifier_free_guidance, signed_indicator_feature
from policy.config import PolicyConfig

OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
ACTION = "action"


def _features(config: PolicyConfig) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    size = config.image_size
    inputs = {
        f"{OBS_IMAGES}.{cam}": PolicyFeature(FeatureType.VISUAL, (3, size, size)) for cam in config.cameras
    }
    inputs[OBS_STATE] = PolicyFeature(FeatureType.STATE, (config.state_dim + 1,))
    outputs = {ACTION: PolicyFeature(FeatureType.ACTION, (config.action_dim,))}
    return inputs, outputs


def build_lerobot_policy(config: PolicyConfig) -> torch.nn.Module:
    """An ``ACTPolicy`` or ``DiffusionPolicy`` whose inputs are the cameras and the state plus the indicator."""
    input_features, output_features = _features(config)
    common: dict[str, Any] = {
        "input_features": input_features,
        "output_features": output_features,
        "device": "cpu",
        "pretrained_backbone_weights": None,
    }
    if config.kind == "act":
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        settings = {"chunk_size": config.chunk_size, "n_action_steps": config.chunk_size, **common}
        return ACTPolicy(ACTConfig(**{**settings, **config.lerobot_overrides}))
    if config.kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

        settings = {
            "n_obs_steps": 1,
            "horizon": config.chunk_size,
            "n_action_steps": config.chunk_size,
            "drop_n_last_frames": 0,
            "crop_shape": None,
            **common,
        }
        return DiffusionPolicy(DiffusionConfig(**{**settings, **config.lerobot_overrides}))
    raise ValueError(f"not a LeRobot policy kind: {config.kind!r}")


class LeRobotPolicyModel(PolicyModel):
    """ACT or diffusion (``config.kind``) with the advantage indicator as a state feature."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        self.policy = build_lerobot_policy(config)

    def reset(self) -> None:
        """Empty LeRobot's rollout queues: ACT's action queue (or its temporal ensembler), diffusion's action and
        observation-history queues. ``Policy`` calls it at every episode start and every takeover.

        ``predict_chunk`` bypasses ``select_action``, the only thing that fills them, so under vivarl they stay
        empty; clearing them anyway means a caller of LeRobot's own rollout API (its evaluation scripts) never
        replays actions planned before a takeover either. LeRobot's ``reset`` rebuilds only those queues;
        weights, buffers and configuration are untouched, so it is safe mid-episode.
        """
        self.policy.reset()

    def _observation(self, inputs: PolicyInputs, indicator: torch.Tensor) -> dict[str, Any]:
        state = torch.cat([inputs.state, signed_indicator_feature(indicator)], dim=-1)
        # Images in [-1, 1]: the backbones are trained from scratch here, so any fixed centring will do.
        images = [inputs.images[cam] * 2.0 - 1.0 for cam in self.config.cameras]
        if self.config.kind == "act":
            return {OBS_STATE: state, OBS_IMAGES: images}
        return {OBS_STATE: state[:, None], OBS_IMAGES: torch.stack(images, dim=1)[:, None]}

    def loss(self, inputs: PolicyInputs, targets: PolicyTargets) -> torch.Tensor:
        observation = self._observation(inputs, inputs.indicator)
        valid = targets.valid.to(targets.actions.dtype)
        if self.config.kind == "act":
            batch = {**observation, ACTION: targets.actions, "action_is_pad": ~targets.valid}
            predicted, (mu, log_sigma_x2) = self.policy.model(batch)
            error = (predicted - targets.actions).abs()
            regulariser = torch.zeros(())
            if self.policy.config.use_vae:
                kld = -0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())
                regulariser = self.policy.config.kl_weight * kld.sum(-1).mean()
        else:
            diffusion = self.policy.diffusion
            global_cond = diffusion._prepare_global_conditioning(observation)
            noise = torch.randn_like(targets.actions)
            steps = torch.randint(
                0, diffusion.noise_scheduler.config.num_train_timesteps, (targets.actions.shape[0],)
            ).to(targets.actions.device)
            noisy = diffusion.noise_scheduler.add_noise(targets.actions, noise, steps)
            predicted = diffusion.unet(noisy, steps, global_cond=global_cond)
            wanted = noise if self.policy.config.prediction_type == "epsilon" else targets.actions
            error = (predicted - wanted).square()
            regulariser = torch.zeros(())
        per_frame = (error.mean(-1) * valid).sum(-1) / valid.sum(-1).clamp_min(1.0)
        return weighted_mean(per_frame, targets.weight) + regulariser

    @torch.no_grad()
    def predict_chunk(
        self, inputs: PolicyInputs, cfg_beta: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        guided = cfg_beta != 1.0
        conditional = self._observation(inputs, inputs.indicator)
        unconditional = (
            self._observation(inputs, torch.full_like(inputs.indicator, DROPPED)) if guided else None
        )
        if self.config.kind == "act":
            actions = self.policy.model(conditional)[0]
            if guided:
                actions = classifier_free_guidance(actions, self.policy.model(unconditional)[0], cfg_beta)
            return actions
        return self._denoise(conditional, unconditional, cfg_beta, generator)

    def _denoise(
        self,
        conditional: dict[str, Any],
        unconditional: dict[str, Any] | None,
        cfg_beta: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        diffusion = self.policy.diffusion
        cond = diffusion._prepare_global_conditioning(conditional)
        uncond = None if unconditional is None else diffusion._prepare_global_conditioning(unconditional)
        shape = (cond.shape[0], self.config.chunk_size, self.config.action_dim)
        sample = torch.randn(shape, generator=generator).to(cond.device)
        scheduler = diffusion.noise_scheduler
        scheduler.set_timesteps(diffusion.num_inference_steps)
        for t in scheduler.timesteps:
            steps = torch.full((shape[0],), int(t), dtype=torch.long, device=cond.device)
            output = diffusion.unet(sample, steps, global_cond=cond)
            if uncond is not None:
                output = classifier_free_guidance(
                    output, diffusion.unet(sample, steps, global_cond=uncond), cfg_beta
                )
            sample = scheduler.step(output, t, sample, generator=generator).prev_sample
        return sample
