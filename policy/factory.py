"""Build a policy model from its config; the LeRobot models import lerobot only when asked for."""

from __future__ import annotations

from policy.base import PolicyModel
from policy.config import PolicyConfig


def build_model(config: PolicyConfig) -> PolicyModel:
    if config.kind == "builtin":
        from policy.builtin import BuiltinPolicyModel

        return BuiltinPolicyModel(config)
    from policy.lerobot_policies import LeRobotPolicyModel

    return LeRobotPolicyModel(config)
