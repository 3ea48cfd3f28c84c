"""Checks that run before any arm moves: each names the problem and the fix."""

from __future__ import annotations

from pathlib import Path

from improve.config import VivarlConfig


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
    if loop.policy_start not in ("deployed", "scratch"):
        raise PreflightError(f"loop.policy_start must be 'deployed' or 'scratch', got {loop.policy_start!r}")
    if loop.outcome_source not in ("simulator", "operator"):
        raise PreflightError(
            f"loop.outcome_source must be 'simulator' or 'operator', got {loop.outcome_source!r}"
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
    cameras = {tuple(r.sim_box.cameras) for r in config.robots.values() if r.type == "sim_box"}
    for names in cameras:
        for model, wanted in (
            ("valuemodel", config.valuemodel.cameras),
            ("policy_learner.policy", config.policy_learner.policy.cameras),
        ):
            missing = sorted(set(wanted) - set(names))
            if missing:
                raise PreflightError(
                    f"{model}.cameras wants {missing}, which the arms do not have (they have {list(names)})"
                )
    if (
        config.value_learner.store_url != config.store_url
        or config.policy_learner.store_url != config.store_url
    ):
        raise PreflightError(
            "value_learner.store_url and policy_learner.store_url must be the run's store_url"
        )
