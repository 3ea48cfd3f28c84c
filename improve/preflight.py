"""Checks that run before any arm moves: each names the problem and the fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from improve.config import VivarlConfig
from robot_io.spec import RobotSpec


class PreflightError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"vivarl: {message}")


def check_config(config: VivarlConfig) -> None:
    loop = config.loop
    for name in ("demo_episodes", "episodes_per_round", "eval_episodes"):
        if getattr(loop, name) < 1:
            raise PreflightError(f"loop.{name} must be at least 1, got {getattr(loop, name)}")
    if loop.rounds < 0:
        raise PreflightError(f"loop.rounds must be >= 0, got {loop.rounds}")
    from improve.collection import SEEDS_PER_ATTEMPT

    if loop.max_collect_attempts * SEEDS_PER_ATTEMPT > loop.ROUND_STRIDE:
        raise PreflightError(
            f"loop.max_collect_attempts={loop.max_collect_attempts} would draw training seeds from the next "
            f"round's range; use at most {loop.ROUND_STRIDE // SEEDS_PER_ATTEMPT}"
        )
    train_low = loop.training_seed_base(0)
    train_high = loop.training_seed_base(loop.rounds + 1)
    eval_high = loop.eval_seed_base + loop.eval_episodes
    if loop.eval_seed_base < train_high and train_low < eval_high:
        raise PreflightError(
            f"evaluation seeds [{loop.eval_seed_base}, {eval_high}) overlap the training episodes' seeds "
            f"[{train_low}, {train_high}) of loop.seed={loop.seed}: move loop.eval_seed_base outside them"
        )
    if loop.mode not in ("pipeline", "continual"):
        raise PreflightError(f"loop.mode must be 'pipeline' or 'continual', got {loop.mode!r}")
    from improve.scheduler import STREAM_SEED_OFFSET

    if loop.mode == "continual" and loop.max_collect_attempts * SEEDS_PER_ATTEMPT > STREAM_SEED_OFFSET:
        raise PreflightError(
            f"loop.max_collect_attempts={loop.max_collect_attempts} would draw seeds from the rollouts collected "
            f"ahead (loop.mode=continual); use at most {STREAM_SEED_OFFSET // SEEDS_PER_ATTEMPT}"
        )
    most = loop.ROUND_STRIDE - STREAM_SEED_OFFSET
    if not 0 <= loop.rollouts_ahead < most:
        raise PreflightError(f"loop.rollouts_ahead must be >= 0 and below {most}, got {loop.rollouts_ahead}")
    if loop.policy_start not in ("deployed", "scratch"):
        raise PreflightError(f"loop.policy_start must be 'deployed' or 'scratch', got {loop.policy_start!r}")
    if loop.outcome_source not in ("simulator", "operator"):
        raise PreflightError(
            f"loop.outcome_source must be 'simulator' or 'operator', got {loop.outcome_source!r}"
        )
    unpaced = sorted(r.name for r in config.robots.values() if r.is_real and not r.is_paced)
    if unpaced:
        raise PreflightError(
            f"arms {unpaced} are real arms set to run unpaced (robots.<name>.paced=false): the loop would "
            f"command them as fast as it turns, not at their control_hz. Remove the override (real arms are "
            f"paced by default) or set robots.{unpaced[0]}.paced=true"
        )
    simulated = [r.name for r in config.robots.values() if r.type == "sim_box"]
    if loop.outcome_source == "simulator" and len(simulated) != len(config.robots):
        real = sorted(set(config.robots) - set(simulated))
        raise PreflightError(
            f"arms {real} are not simulated: set loop.outcome_source=operator to label by hand"
        )
    for path, what in (
        (config.policy_learner.base_checkpoint, "policy_learner.base_checkpoint"),
        (config.valuemodel.pretrained_dir, "valuemodel.pretrained_dir"),
    ):
        if path and not Path(path).is_dir():
            raise PreflightError(
                f"{what} points to {path}, which is not a directory; fix the path or leave it empty"
            )
    for robot in config.robots.values():
        if robot.type != "sim_box":
            continue
        # The simulator's cameras are known from its config: what the models read is checked before Ray starts.
        # Other arms are checked against their spec once their actors have connected (``fit_models_to_arm``).
        names = robot.sim_box.cameras
        for model, wanted in (
            ("valuemodel", config.valuemodel.cameras or robot.models.value_cameras),
            ("policy_learner.policy", config.policy_learner.policy.cameras or robot.models.policy_cameras),
        ):
            missing = sorted(set(wanted) - set(names))
            if missing:
                raise PreflightError(
                    f"{model}.cameras wants {missing}, which arm '{robot.name}' does not have (it has "
                    f"{list(names)}); robots.{robot.name}.models says which cameras the models read by default"
                )
    if (
        config.value_learner.store_url != config.store_url
        or config.policy_learner.store_url != config.store_url
    ):
        raise PreflightError(
            "value_learner.store_url and policy_learner.store_url must be the run's store_url"
        )


def fit_models_to_arm(config: VivarlConfig, spec: RobotSpec) -> VivarlConfig:
    """The run config with what the policy and the value model leave to the arm filled in from the arms' spec
    (every arm of a run shares one, the store's schema) and their ``robots.<name>.models`` defaults.

    Called once the arms' actors have connected and reported their spec, before any episode: a model that
    reads a camera the arm lacks, a width that differs or a relative action the arm does not have is refused
    here, naming the problem and the fix, rather than when the first round trains.
    """
    defaults = {name: robot.models for name, robot in config.robots.items()}
    first = next(iter(defaults.values()))
    differing = sorted(name for name, models in defaults.items() if models != first)
    if differing:
        raise PreflightError(
            f"arms {differing} have other robots.<name>.models than {next(iter(defaults))}: the arms of one run "
            "feed one policy and one value model, so give them the same"
        )
    try:
        policy = config.policy_learner.policy.with_robot_spec(
            spec.camera_names,
            spec.state_names,
            spec.action_names,
            arm_cameras=first.policy_cameras,
            arm_relative_actions=first.relative_actions,
        )
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    value_cameras = config.valuemodel.cameras or first.value_cameras or list(spec.camera_names)
    missing = [c for c in value_cameras if c not in spec.camera_names]
    if missing:
        raise PreflightError(
            f"the value model reads cameras {missing}, which the arms do not have (they have "
            f"{list(spec.camera_names)}): set valuemodel.cameras, or robots.<name>.models.value_cameras"
        )
    if config.valuemodel.state_dim and config.valuemodel.state_dim != spec.state_dim:
        raise PreflightError(
            f"valuemodel.state_dim is {config.valuemodel.state_dim}, but the arms have {spec.state_dim} state "
            f"values ({', '.join(spec.state_names)}): set valuemodel.state_dim=0 for the arms'"
        )
    valuemodel = replace(config.valuemodel, cameras=list(value_cameras)).with_robot_spec(
        spec.camera_names, spec.state_dim
    )
    return replace(
        config,
        valuemodel=valuemodel,
        policy_learner=replace(config.policy_learner, policy=policy),
    )
