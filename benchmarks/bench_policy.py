"""Built-in policy throughput on CPU: training steps per second and deployment latency per chunk.

Run: ``.venv/bin/python benchmarks/bench_policy.py [--threads 1] [--batch-size 32]``. Synthetic tensors, so it
measures the network alone (the replay loader adds its own cost, see benchmarks/bench_replay_ingest.py).
"""

from __future__ import annotations

import argparse
import time

import torch

from policy.base import PolicyInputs, PolicyTargets
from policy.builtin import BuiltinPolicyModel
from policy.config import PolicyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{'head':<5} {'image':>5} {'params':>8} {'train ms/step':>14} {'chunk ms':>9} {'chunk ms (cfg)':>15}"
    )
    for head in ("flow", "l1"):
        for size in (64, 96):
            config = PolicyConfig(head=head, image_size=size)
            model = BuiltinPolicyModel(config)
            b = args.batch_size
            inputs = PolicyInputs(
                images={c: torch.rand(b, 3, size, size) for c in config.cameras},
                state=torch.randn(b, config.state_dim),
                indicator=torch.randint(0, 3, (b,)),
            )
            targets = PolicyTargets(
                torch.randn(b, config.chunk_size, config.action_dim),
                torch.ones(b, config.chunk_size, dtype=torch.bool),
                torch.ones(b),
            )
            optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
            model.train()
            for step in range(args.steps + 3):
                if step == 3:
                    start = time.perf_counter()
                loss = model.loss(inputs, targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            train_ms = (time.perf_counter() - start) / args.steps * 1000
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


if __name__ == "__main__":
    main()
