"""Value-learner throughput: samples/s and the fraction of step time spent waiting on data (goal < 5%).

    .venv/bin/python benchmarks/bench_value_learner.py [--kind viva] [--steps 150] [--episodes 16]

Three measurements in one run, same model config and batch size:

1. baseline: gradient steps on one pre-loaded in-memory batch (VAE latents already computed): pure compute;
2. learner, cold: ``ValueLearner.refit`` on a fresh synthetic replay store; every frame it samples for the first
   time goes through the frozen VAE (counted as data time: it is input preparation, not training);
3. learner, warm: a second refit with the latent cache filled, the steady state of a learner that refits every
   round on mostly the same frames.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from learners.value_data import batch_adapter, frame_dataset, write_synthetic_store
from learners.value_learner import LatentCache, ValueLearner, ValueLearnerConfig
from replay import FrameIndex
from valuemodel.config import ValueModelConfig
from valuemodel.factory import build_value_model
from valuemodel.synthetic import synthetic_config


def baseline_samples_per_s(learner: ValueLearner, model_config: ValueModelConfig, steps: int) -> float:
    """Steps on one pre-loaded batch: the compute-only ceiling of the learner's loop."""
    torch.manual_seed(0)
    model = build_value_model(model_config)
    index = FrameIndex(learner.store)
    index.refresh()
    stats = learner._stats(index)
    cache = None if model_config.kind == "static" else LatentCache(100_000)
    adapter = batch_adapter(learner.store, model, stats, cache)
    dataset = frame_dataset(learner.store, model_config, stats, cached=cache is not None, training=True)
    keys = index.keys(torch.randperm(len(index))[: learner.config.batch_size].numpy())
    batch = adapter(dataset.__getitems__(keys))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    kwargs = {} if model_config.kind == "static" else {"generator": generator}
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.loss(batch, **kwargs)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * learner.config.batch_size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="viva", choices=("viva", "wvm", "static"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ["expert", "hesitation", "retry", "failure"] * (args.episodes // 4)
        write_synthetic_store(str(Path(tmp) / "store"), kinds, image_size=64, length_range=(40, 60))
        model_config = synthetic_config("tiny", args.kind, horizon=10, tasks=["synthetic task"])
        config = ValueLearnerConfig(
            store_url=str(Path(tmp) / "store"), checkpoint_root=str(Path(tmp) / "ckpt"), steps=args.steps,
            batch_size=args.batch_size, task_names=["synthetic"], checkpoint_every=0, log_every=0, device="cpu",
            wvm_frame_stride=2,
        )  # fmt: skip
        learner = ValueLearner(config, model_config)
        baseline = baseline_samples_per_s(learner, model_config, args.steps)
        learner.refit(0)
        cold = dict(learner.metrics)
        learner.refit(1)
        warm = dict(learner.metrics)
    result = {
        "kind": args.kind,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "episodes": len(kinds),
        "baseline_in_memory_samples_per_s": round(baseline, 1),
        "learner_cold_samples_per_s": round(cold["samples_per_s"], 1),
        "learner_cold_data_wait_fraction": round(cold["data_wait_fraction"], 3),
        "learner_warm_samples_per_s": round(warm["samples_per_s"], 1),
        "learner_warm_data_wait_fraction": round(warm["data_wait_fraction"], 3),
        "warm_vs_baseline": round(warm["samples_per_s"] / baseline, 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
