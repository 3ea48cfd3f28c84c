"""Policy-learner throughput: samples/s and the fraction of loop time spent waiting on data (goal < 5%).

    .venv/bin/python benchmarks/bench_policy_learner.py [--episodes 12] [--steps 200] [--threads 1]

Measured in one run, same policy config (the shipped built-in policy at 64x64) and batch size:

1. baseline: gradient steps on one in-memory batch of the learner's shapes: the compute-only ceiling;
2. the policy learner (``train_policy_round``, RECAP extraction) on a replay store of scripted simulator episodes,
   reading in the training process (0 workers) and with 1 loader worker; the learner times each step's wait for
   its next batch (read, decode, normalise) against the optimisation step itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearnerConfig, train_policy_round
from learners.policy_sim_data import open_sim_store, record_expert_episodes
from policy.base import PolicyInputs, PolicyTargets
from policy.builtin import BuiltinPolicyModel
from policy.config import PolicyConfig
from robot_io.config import ExpertConfig, SimBoxConfig


def baseline_samples_per_s(config: PolicyConfig, batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = BuiltinPolicyModel(config)
    size = config.image_size
    inputs = PolicyInputs(
        images={c: torch.rand(batch_size, 3, size, size) for c in config.cameras},
        state=torch.randn(batch_size, config.state_dim),
        indicator=torch.randint(0, 3, (batch_size,)),
    )
    targets = PolicyTargets(
        torch.randn(batch_size, config.chunk_size, config.action_dim),
        torch.ones(batch_size, config.chunk_size, dtype=torch.bool),
        torch.ones(batch_size),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps + 5):
        if step == 5:
            start = time.perf_counter()
        loss = model.loss(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy_config = PolicyConfig()
    sim_config = SimBoxConfig(cameras=list(policy_config.cameras), max_steps=400)
    result: dict[str, float | int | str] = {"batch_size": args.batch_size, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "store")
        store = open_sim_store(url, sim_config)
        record_expert_episodes(store, sim_config, ExpertConfig(hesitation_prob=0.5), range(args.episodes))
        label_store(store, LabellingConfig(run="bench", horizon=10))
        result["episodes"] = args.episodes
        result["frames"] = sum(r.meta.length for r in store.records().values())
        baseline = baseline_samples_per_s(policy_config, args.batch_size, args.steps)
        result["baseline_in_memory_samples_per_s"] = round(baseline, 1)
        for workers in (0, 1):
            config = PolicyLearnerConfig(
                store_url=url, checkpoint_dir=str(Path(tmp) / f"ckpt{workers}"), policy=policy_config,
                labelling_run="bench", steps=args.steps, batch_size=args.batch_size, log_every=args.steps,
                num_workers=workers,
            )  # fmt: skip
            trained = train_policy_round(config, 0, log=lambda _: None)
            result[f"learner_{workers}_workers_samples_per_s"] = round(trained.samples_per_s, 1)
            result[f"learner_{workers}_workers_data_wait_fraction"] = round(trained.data_wait_fraction, 3)
            result[f"learner_{workers}_workers_vs_baseline"] = round(trained.samples_per_s / baseline, 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
