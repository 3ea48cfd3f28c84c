"""Built-in policy and policy-learner throughput on CPU.

    .venv/bin/python benchmarks/bench_policy.py [--part network|learner|all] [--threads 1] [--batch-size 32]

``network``: training steps per second and deployment latency per chunk of the network alone, on synthetic
tensors, for each head and image size.

``learner``: samples/s and the fraction of loop time the policy learner waits on data (goal < 5%), measured in
one run against a baseline: gradient steps on one in-memory batch of the learner's shapes (the compute-only
ceiling), then ``train_policy_round`` (RECAP extraction) on a replay store of scripted simulator episodes, reading
in the training process (0 workers) and with 1 loader worker; the learner times each step's wait for its next
batch (read, decode, normalise) against the optimisation step itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from policy.base import PolicyInputs, PolicyTargets
from policy.builtin import BuiltinPolicyModel
from policy.config import PolicyConfig


def synthetic_batch(config: PolicyConfig, batch_size: int) -> tuple[PolicyInputs, PolicyTargets]:
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
    return inputs, targets


def train_steps_per_s(
    model: BuiltinPolicyModel, batch: tuple[PolicyInputs, PolicyTargets], steps: int
) -> float:
    """Optimisation steps per second on one in-memory batch (after 3 warm-up steps)."""
    inputs, targets = batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        loss = model.loss(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps / (time.perf_counter() - start)


def network(args: argparse.Namespace) -> None:
    print(
        f"{'head':<5} {'image':>5} {'params':>8} {'train ms/step':>14} {'chunk ms':>9} {'chunk ms (cfg)':>15}"
    )
    for head in ("flow", "l1"):
        for size in (64, 96):
            config = PolicyConfig(head=head, image_size=size)
            model = BuiltinPolicyModel(config)
            inputs, targets = synthetic_batch(config, args.batch_size)
            train_ms = 1000 / train_steps_per_s(model, (inputs, targets), args.steps)
            model.eval()
            one = PolicyInputs(
                {c: v[:1] for c, v in inputs.images.items()}, inputs.state[:1], inputs.indicator[:1]
            )
            latency = []
            for beta in (1.0, 1.5):
                start = time.perf_counter()
                for _ in range(20):
                    model.predict_chunk(one, cfg_beta=beta)
                latency.append((time.perf_counter() - start) / 20 * 1000)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(
                f"{head:<5} {size:>5} {params:>7.2f}M {train_ms:>14.1f} {latency[0]:>9.2f} {latency[1]:>15.2f}"
            )


def learner(args: argparse.Namespace) -> None:
    from actors.local import record_demonstrations, sim_arm
    from learners.policy_labels import LabellingConfig, label_store
    from learners.policy_learner import PolicyLearnerConfig, train_policy_round
    from replay import ReplayStore
    from robot_io.config import ExpertConfig, SimBoxConfig

    policy_config = PolicyConfig()
    sim_config = SimBoxConfig(cameras=list(policy_config.cameras), max_steps=400)
    steps = args.learner_steps
    result: dict[str, float | int] = {"batch_size": args.batch_size, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "store")
        record_demonstrations(
            url, sim_arm(sim_config, ExpertConfig(hesitation_prob=0.5)), range(args.episodes)
        )
        store = ReplayStore.open(url)
        label_store(store, LabellingConfig(run="bench", horizon=10))
        result["episodes"] = args.episodes
        result["frames"] = sum(r.meta.length for r in store.records().values())
        torch.manual_seed(0)
        baseline = args.batch_size * train_steps_per_s(
            BuiltinPolicyModel(policy_config), synthetic_batch(policy_config, args.batch_size), steps
        )
        result["baseline_in_memory_samples_per_s"] = round(baseline, 1)
        for workers in (0, 1):
            config = PolicyLearnerConfig(
                store_url=url, checkpoint_dir=str(Path(tmp) / f"ckpt{workers}"), policy=policy_config,
                labelling_run="bench", steps=steps, batch_size=args.batch_size, log_every=steps,
                num_workers=workers,
            )  # fmt: skip
            trained = train_policy_round(config, 0, log=lambda _: None)
            result[f"learner_{workers}_workers_samples_per_s"] = round(trained.samples_per_s, 1)
            result[f"learner_{workers}_workers_data_wait_fraction"] = round(trained.data_wait_fraction, 3)
            result[f"learner_{workers}_workers_vs_baseline"] = round(trained.samples_per_s / baseline, 3)
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("network", "learner", "all"), default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per network configuration")
    parser.add_argument("--episodes", type=int, default=12, help="simulator episodes for the learner part")
    parser.add_argument("--learner-steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("network", "all"):
        network(args)
    if args.part in ("learner", "all"):
        learner(args)


if __name__ == "__main__":
    main()
