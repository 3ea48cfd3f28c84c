"""learners: what turns recorded episodes into better models.

Exposes the value learner (``ValueLearner``, ``ValueLearnerConfig``, its Ray actor ``launch_value_learner``),
backbone pretraining on recorded video (``pretrain_backbone``, ``BackbonePretrainConfig``), RECAP advantage
labelling (``recap_advantages``, ``binarize_advantages``, ``awr_weights``, ``wvm_delta``, ``label_store`` with
``LabellingConfig``) and the policy learner (``PolicyLearner``, ``PolicyLearnerConfig``, ``train_policy_round``,
its Ray actor ``launch_policy_learner``). Calling a value model's ``predict`` directly, ``normalise_state`` and
``denormalise_state`` with a checkpoint's ``ValueDataStats`` (``norm_stats.json``) map proprioception into and
out of its [-1, 1] range. Ray is imported only by the actor modules and the simulator not at all, so importing
this package pulls in neither; scripts and tests record simulated episodes through ``actors.local``.
"""

from learners.advantage import awr_weights, binarize_advantages, recap_advantages, wvm_delta
from learners.backbone_pretrain import BackbonePretrainConfig, pretrain_backbone
from learners.policy_actor import launch_policy_learner
from learners.policy_labels import LabellingConfig, LabellingReport, label_store
from learners.policy_learner import PolicyLearner, PolicyLearnerConfig, PolicyTrainResult, train_policy_round
from learners.value_actor import launch_value_learner
from learners.value_learner import NonFiniteLossError, ValueLearner, ValueLearnerConfig
from valuemodel.norm_stats import ValueDataStats, denormalise_state, normalise_state

__all__ = [
    "BackbonePretrainConfig",
    "LabellingConfig",
    "LabellingReport",
    "NonFiniteLossError",
    "PolicyLearner",
    "PolicyLearnerConfig",
    "PolicyTrainResult",
    "ValueDataStats",
    "ValueLearner",
    "ValueLearnerConfig",
    "awr_weights",
    "binarize_advantages",
    "denormalise_state",
    "label_store",
    "launch_policy_learner",
    "launch_value_learner",
    "normalise_state",
    "pretrain_backbone",
    "recap_advantages",
    "train_policy_round",
    "wvm_delta",
]
