"""The value learner as a Ray actor (ray.init local), and its TorchTrainer (DDP) path on one CPU worker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from learners.value_data import write_synthetic_store
from learners.value_learner import ValueLearnerConfig
from valuemodel.checkpoint import list_versions, load_norm_stats
from valuemodel.config import ValueModelConfig

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def configs(tmp_path, **overrides):
    write_synthetic_store(str(tmp_path / "store"), ["expert", "retry", "failure"])
    values = dict(
        store_url=str(tmp_path / "store"), checkpoint_root=str(tmp_path / "ckpt"), steps=3, batch_size=8,
        task_names=["synthetic"], log_every=0, device="cpu", continual_chunk_steps=2, continual_poll_s=0.05,
    )  # fmt: skip
    values.update(overrides)
    model = ValueModelConfig.preset("tiny", "static", image_height=32, image_width=32, static_channels=8)
    return ValueLearnerConfig(**values), model


def test_actor_refits_labels_and_runs_continual(local_ray, tmp_path):
    from learners.value_actor import launch_value_learner

    config, model = configs(tmp_path)
    actor = launch_value_learner(config, model)
    assert ray.get(actor.latest_version.remote()) is None
    assert ray.get(actor.refit.remote(0)) == 1
    assert ray.get(actor.label.remote(1)) == 3
    ray.get(actor.start_continual.remote())
    deadline = 60
    while ray.get(actor.latest_version.remote()) in (None, 1) and deadline > 0:
        ray.get(actor.metrics.remote())
        deadline -= 1
        time.sleep(0.2)
    versions = ray.get(actor.stop_continual.remote())
    assert versions and versions[0] == 2 and versions == sorted(versions)
    assert ray.get(actor.latest_version.remote()) == versions[-1]
    ray.kill(actor)


@pytest.mark.slow
def test_torch_trainer_refit_on_one_cpu_worker(local_ray, tmp_path):
    from learners.value_actor import refit_with_torch_trainer
    from telemetry import RunTelemetry, WandbConfig

    config, model = configs(tmp_path, distributed="ddp", train_workers=1)
    telemetry = RunTelemetry(WandbConfig(mode="offline"), "night", str(tmp_path / "run"), "value_learner")
    assert refit_with_torch_trainer(config, model, round_index=0, use_gpu=False, telemetry=telemetry) == 1
    # Rank 0 logged the refit's curve to its own offline W&B run in the run's folder.
    (logged,) = (tmp_path / "run" / "wandb").glob("offline-run-*-night-value_learner-refit-r0")
    assert any(f.suffix == ".wandb" and f.stat().st_size > 0 for f in logged.iterdir())
    assert list_versions(tmp_path / "ckpt") == [1]
    assert load_norm_stats(tmp_path / "ckpt")["provenance"]["steps"] == config.steps
    assert np.isfinite(load_norm_stats(tmp_path / "ckpt")["provenance"]["frames"])
