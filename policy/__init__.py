"""policy: the policies that actors run and the policy learner trains, with RECAP advantage conditioning.

``Policy`` (``policy.deploy``) is what an actor calls: ``reset(seed)``, ``act(observation) -> absolute action``;
load one with ``load_policy(path)`` (``policy.checkpoint``). Models: the built-in CNN policy
(``policy.builtin``) and LeRobot's ACT and diffusion policies (``policy.lerobot_policies``, imported lazily).
``AsyncChunkPolicy`` (``policy.async_chunks``, configured by ``InferenceConfig``) predicts a ``Policy``'s chunks
off the control thread for real arms. ``PolicyConfig.with_robot_spec`` fills in what a config leaves to the arm.
This package imports robot_io's spec types and the shared ``checkpoints`` layout only; it never imports actors,
replay or learners.
"""

from policy.async_chunks import AsyncChunkPolicy, InferenceConfig
from policy.base import Normalizer, PolicyInputs, PolicyModel, PolicyTargets
from policy.checkpoint import list_versions, load_model, load_policy, read_meta, save_policy
from policy.conditioning import (
    DROPPED,
    NEGATIVE,
    POSITIVE,
    advantage_prompt,
    classifier_free_guidance,
    drop_indicators,
)
from policy.config import PolicyConfig
from policy.deploy import Policy
from policy.factory import build_model

__all__ = [
    "DROPPED",
    "NEGATIVE",
    "AsyncChunkPolicy",
    "InferenceConfig",
    "POSITIVE",
    "Normalizer",
    "Policy",
    "PolicyConfig",
    "PolicyInputs",
    "PolicyModel",
    "PolicyTargets",
    "advantage_prompt",
    "build_model",
    "classifier_free_guidance",
    "drop_indicators",
    "list_versions",
    "load_model",
    "load_policy",
    "read_meta",
    "save_policy",
]
