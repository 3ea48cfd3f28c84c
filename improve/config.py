"""The top-level run config, one typed dataclass composed by Hydra from ``configs/``.

Hydra composes in the driver only; everything downstream receives these resolved dataclasses. The schema is
registered with Hydra's ConfigStore so that every override is type-checked and a typo fails at composition time
with Hydra's own message, before any robot is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from actors.console import ConsoleConfig
from actors.live_value import LiveValueConfig
from improve.evaluation import GateConfig
from improve.monitor import WandbConfig
from learners.policy_labels import LabellingConfig
from learners.policy_learner import PolicyLearnerConfig
from learners.value_learner import ValueLearnerConfig
from learners.value_quality import ValueFloorConfig
from policy.async_chunks import InferenceConfig
from robot_io.config import RobotConfig
from valuemodel.config import ValueModelConfig


@dataclass
class TaskConfig:
    """What the arms are asked to do; the name keys per-task statistics, the instruction conditions models."""

    name: str = "box_assembly"
    instruction: str = "put the item in the box, fold the flaps and close the lid"


@dataclass
class DemoBatchConfig:
    """The scripted-expert episode batch that `vivarl-demo` records (a look at the task, no learning)."""

    # Episodes to record, with seeds seed, seed+1, ...
    num_episodes: int = 4
    seed: int = 0
    # Write an mp4 of every camera side by side.
    video: bool = True
    video_fps: float = 10.0


@dataclass
class BackboneConfig:
    """Round 0's unlabelled pretraining of the tiny Wan backbone on the demonstrations' own video
    (``vivarl-pretrain-backbone``), so that ViVa and WVM never start from random weights in the main job. Skipped
    when ``valuemodel.pretrained_dir`` is set (Wan2.2-TI2V-5B on a lab machine) or for the static baseline."""

    enabled: bool = True
    # Sized for the main job's 25 minutes on 2 CPU cores (the VAE's steps dominate: about 0.3 s each there): the
    # improvement-loop study's size, at which RECAP + ViVa rose +26 to +42 points on 3 run seeds (RESULTS.md; 500
    # each took 5.5 min of round 0). vivarl-pretrain-backbone's own defaults (1600, 2000) reconstruct the item better.
    vae_steps: int = 200
    video_steps: int = 200
    # WanTransformer3DModel kwargs on top of the size preset (the value models read the saved config).
    transformer_overrides: dict[str, int] = field(default_factory=dict)


@dataclass
class LoopConfig:
    """The improvement loop: round 0 learns from demonstrations, each later round improves on the last."""

    # Improvement rounds after round 0 (the run stops earlier if the budget runs out).
    rounds: int = 3
    # Round 0: demonstrations recorded by the arms' demonstrators (the scripted expert in simulation).
    demo_episodes: int = 30
    # Each improvement round: policy rollouts with human (or scripted) corrections.
    episodes_per_round: int = 20
    # Each round's new policy is evaluated on these many fixed evaluation seeds (indicator positive, no
    # interventions) before the gate decides whether to deploy it. 100 keeps a 95% interval within +-10 points.
    eval_episodes: int = 100
    # The evaluation seeds are eval_seed_base, eval_seed_base + 1, ...: the same for every round and every run,
    # and disjoint from the training seeds (which start at seed * 10_000_000).
    eval_seed_base: int = 1_000_000_000
    # Stop starting new rounds after this many hours of wall time (0: no limit).
    budget_hours: float = 0.0
    # The run seed: base of the training episodes' seeds (simulation), added to the learners' seeds.
    seed: int = 0
    # Attempts to collect a stage's episodes when arms fail mid-stage, before the run stops with an error.
    max_collect_attempts: int = 5
    # An arm that fails this often in one stage is set aside until the next stage, and the stage finishes on the
    # others (the round table names it); the run stops only when no arm is left. 0: never set an arm aside.
    arm_failures_to_set_aside: int = 2
    # No side waits for ever on the other. An arm whose batch of episodes has not come back within this many
    # seconds per episode (start, reset, steps and the outcome's answer) is taken as hung: Ray restarts its actor
    # and the stage counts a failure against it. 0: wait as long as it takes.
    episode_deadline_s: float = 1800.0
    # A learner call (backbone pretraining, a value refit or its labelling, a policy's training) that gives no
    # answer within this many seconds stops the run with an error naming it (resume with the same command).
    learner_deadline_s: float = 12 * 3600.0
    # An arm's other calls (load a policy or a value model, report its state) that give no answer within this many
    # seconds stop the run with an error naming the arm and the call (resume with the same command). 0: no limit.
    arm_call_deadline_s: float = 600.0
    # The first call to each arm waits for Ray to place its actor on the arm's node and for the arm to connect
    # (a node that joins late, a slow camera): this long at most. 0: no limit.
    arm_startup_deadline_s: float = 3600.0
    # "pipeline": stages one after another, the arms idle while the learners work. "continual": from round 1 on the
    # arms stay in episodes through every stage (improve.scheduler): rollouts with the deployed policy, which an
    # arm picks up at its next episode boundary, and a candidate's evaluation seeds in between. A round's collect
    # stage ends once it has loop.episodes_per_round rollouts of the newest deployed policy; the rollouts recorded
    # meanwhile by the one before are the round's too, so a round trains on more data than in the pipeline.
    mode: str = "pipeline"
    # continual: at most this many of a round's rollouts recorded before its collect stage, i.e. while the round
    # before learns and evaluates (0: no limit, the arms never wait).
    rollouts_ahead: int = 0
    # "simulator" (ground truth) or "operator" (a prompt on each arm's node; unlabelled after the time-out).
    outcome_source: str = "simulator"
    outcome_timeout_s: float = 20.0
    # Advantage labelling: the policy learner trains on the indicators of each round's labelling run.
    use_learned_value: bool = True
    # Retrain the policy every round (false: round 0's policy is kept all night, which measures the evaluation's
    # own noise in a study).
    retrain_policy: bool = True
    # Where each improvement round's policy training starts: "deployed" continues from the policy deployed now
    # (steadier from round to round on small data: the gate's incumbent is the starting point), "scratch" from
    # policy_learner.base_checkpoint or fresh weights every round, as RECAP restarts from its pretrained model.
    policy_start: str = "deployed"
    gate: GateConfig = field(default_factory=GateConfig)
    value_floor: ValueFloorConfig = field(default_factory=ValueFloorConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    # Training episode seeds of a round lie in [seed * SEED_STRIDE + round * ROUND_STRIDE, ... + ROUND_STRIDE).
    SEED_STRIDE = 10_000_000
    ROUND_STRIDE = 100_000

    def training_seed_base(self, round_index: int) -> int:
        return self.seed * self.SEED_STRIDE + round_index * self.ROUND_STRIDE


@dataclass
class RayConfig:
    # Empty: start a local Ray (with one resource per configured arm); "auto" or host:port: join a cluster.
    address: str = ""
    # Logical CPUs of the local Ray (0: one per arm plus two for the learners, whatever the machine has).
    num_cpus: int = 0
    # Restarts of a robot actor that died (its torn episode is never sampled; the stage recollects).
    actor_max_restarts: int = 3
    # Restarts of a learner (value or policy) whose process died (killed, out of memory): the driver asks the
    # restarted one again (a refit resumes from its last training checkpoint) while the arms go on collecting in
    # loop.mode=continual. 0: a dead learner stops the run (run the same command to resume).
    learner_max_restarts: int = 3
    # Torch device of policy inference inside robot actors.
    actor_device: str = "cpu"


@dataclass
class VivarlConfig:
    # Where this run writes everything; Hydra's own output dir is set to it. Resuming = same run_dir.
    run_dir: str = "runs/default"
    # The replay store of this run (a directory or any fsspec URL).
    store_url: str = MISSING
    # The arms, by name: each entry is composed from configs/robot/ (``robot@robots.<name>: <choice>`` in the
    # defaults list); the key is the arm's name and wins over any ``name`` inside the entry.
    robots: dict[str, RobotConfig] = field(default_factory=dict)
    task: TaskConfig = field(default_factory=TaskConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    valuemodel: ValueModelConfig = field(default_factory=ValueModelConfig)
    value_learner: ValueLearnerConfig = field(default_factory=ValueLearnerConfig)
    labelling: LabellingConfig = field(default_factory=lambda: LabellingConfig(run="per-round"))
    policy_learner: PolicyLearnerConfig = field(
        # The round driver replaces labelling_run with each round's own labelling run.
        default_factory=lambda: PolicyLearnerConfig(
            store_url=MISSING, checkpoint_dir=MISSING, labelling_run="per-round"
        )
    )
    demo: DemoBatchConfig = field(default_factory=DemoBatchConfig)
    # How the arms' actors run the policy: chunks predicted off the control thread on paced (real) arms.
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Each arm's operator console (a web page on the arm's node): on where an operator gives the outcomes.
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    # The value model scoring each episode live on the console, and asking for a takeover when the value falls.
    live_value: LiveValueConfig = field(default_factory=LiveValueConfig)


def register_configs() -> None:
    """Make the schemas known to Hydra; ``configs/config.yaml`` lists ``vivarl_schema`` first in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="vivarl_schema", node=VivarlConfig)


def to_dataclass(cfg: DictConfig) -> VivarlConfig:
    """Resolve interpolations and convert to the dataclass (runs ``__post_init__`` validation)."""
    config: VivarlConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    if not config.robots:
        raise ValueError(
            "no robots configured: add one with +robot@robots.<name>=sim_box (see configs/robot/)"
        )
    for name, robot in config.robots.items():
        robot.name = name
    if config.value_learner.mode != "refit":
        # The round driver refits once per round; silently doing that for a run asked to train continually would
        # leave the user believing the learner kept up with the arms.
        raise ValueError(
            f"value_learner.mode={config.value_learner.mode!r}: the round driver runs refit only (one fit per "
            "round); continual training is the standalone value learner's (learners.value_actor start_continual), "
            "not yet the loop's. Use value_learner.mode=refit"
        )
    if not config.value_learner.time_limit:
        # The value targets' L_max (and labelling's) is the arms' episode time limit: one fact, set on the arm.
        longest = max(robot.episode_limit_steps for robot in config.robots.values())
        config.value_learner = replace(config.value_learner, time_limit=longest)
    return with_run_seed(config)


def with_run_seed(config: VivarlConfig) -> VivarlConfig:
    """The run seed (``loop.seed``) also seeds both learners, so that two run seeds are two independent runs."""
    if config.loop.seed == 0:
        return config
    return replace(
        config,
        value_learner=replace(config.value_learner, seed=config.value_learner.seed + config.loop.seed),
        policy_learner=replace(config.policy_learner, seed=config.policy_learner.seed + config.loop.seed),
    )
