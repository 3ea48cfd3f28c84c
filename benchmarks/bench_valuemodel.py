"""Value-model throughput: inference frames/s against batch size, and training step time.

Batch 1 is the baseline measured in the same run; every row reports its ratio to it. Inputs are random
precomputed latents (the VAE is frozen and cacheable, so the transformer is what scales with batch);
``--with-vae`` times encoding from raw images as well. Weights are random at every size. The 5b size defaults to
the ViVa paper's inference layout, so its frames/s compare with the paper's 0.18 s/frame ("x paper"; the issue's
goal is 10x through batching): three cameras (7 latent frames) and 512 text tokens in cross-attention (the cost of
T5's, through the learned table that random weights use).

    .venv/bin/python benchmarks/bench_valuemodel.py                          # tiny, CPU
    .venv/bin/python benchmarks/bench_valuemodel.py --size mid --device cuda --dtype bf16
    .venv/bin/python benchmarks/bench_valuemodel.py --size 5b --device cuda --dtype bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from valuemodel.factory import build_value_model
from valuemodel.interface import ValueBatch
from valuemodel.synthetic import synthetic_config

SIZES = {"tiny": "tiny", "mid": "mid", "5b": "wan2.2-ti2v-5b"}
PAPER_SECONDS_PER_FRAME = 0.18  # ViVa's reported inference time per frame on its Wan2.2-5B model
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def make_batch(model, batch: int, with_vae: bool, device: str) -> ValueBatch:
    cfg = model.config
    g = torch.Generator().manual_seed(batch)
    images = latents = video = video_latents = window = None
    h, w = cfg.image_height, cfg.image_width
    if cfg.kind == "wvm":
        t = cfg.prefix_frames + cfg.chunk
        if with_vae:
            video = {c: torch.randint(0, 256, (batch, t, 3, h, w), dtype=torch.uint8) for c in cfg.cameras}
        else:
            video_latents = {c: torch.randn(batch, t, *model.latent_shape, generator=g) for c in cfg.cameras}
        window = torch.rand(batch, cfg.window_frames, generator=g) * 2 - 1
    elif cfg.kind == "static" or with_vae:
        images = {c: torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8) for c in cfg.cameras}
    else:
        latents = {c: torch.randn(batch, *model.latent_shape, generator=g) for c in cfg.cameras}
    return ValueBatch(
        task_id=torch.zeros(batch, dtype=torch.long),
        images=images,
        image_latents=latents,
        state=torch.rand(batch, cfg.state_dim, generator=g) * 2 - 1,
        future_state=torch.rand(batch, cfg.state_dim, generator=g) * 2 - 1,
        value_target=torch.rand(batch, generator=g) * 2 - 1,
        video=video,
        video_latents=video_latents,
        value_window=window,
    ).to(device)


def train_batch(model, batch: int, device: str) -> ValueBatch:
    """Training inputs; WVM needs full windows (prefix + current + future frames)."""
    cfg = model.config
    if cfg.kind != "wvm":
        return make_batch(model, batch, with_vae=False, device=device)
    g = torch.Generator().manual_seed(batch)
    t = cfg.window_frames
    return ValueBatch(
        task_id=torch.zeros(batch, dtype=torch.long),
        video_latents={c: torch.randn(batch, t, *model.latent_shape, generator=g) for c in cfg.cameras},
        value_window=torch.rand(batch, t, generator=g) * 2 - 1,
    ).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, warmup: int, repeats: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--kind", choices=["viva", "wvm", "static"], default="viva")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    parser.add_argument("--train-batch-sizes", default="1,16")
    parser.add_argument("--with-vae", action="store_true", help="encode raw images in the timed inference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument(
        "--cameras",
        type=int,
        default=0,
        help="number of cameras (0: 3 for 5b as in the paper, else the synthetic robot's 2)",
    )
    parser.add_argument(
        "--text-len", type=int, default=0, help="text tokens (0: 512 for 5b as T5 gives, else the preset's)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = SIZES[args.size]
    paper_layout = args.size == "5b"
    overrides = {}
    if args.cameras or paper_layout:
        overrides["cameras"] = [f"camera{i}" for i in range(args.cameras or 3)]
    if args.text_len or paper_layout:
        overrides["text_len"] = args.text_len or 512
    config = synthetic_config(
        size, args.kind, dtype=DTYPES[args.dtype], random_weights=paper_layout, **overrides
    )
    start = time.perf_counter()
    model = build_value_model(config).to(args.device)
    build_s = time.perf_counter() - start
    if args.compile and hasattr(model, "transformer"):
        model.transformer = torch.compile(model.transformer)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"# {args.kind} size={size} device={args.device} dtype={config.dtype} compile={args.compile} "
          f"threads={args.threads} trainable_params={trainable / 1e6:.2f}M build={build_s:.1f}s "
          f"image={config.image_height}x{config.image_width} cameras={len(config.cameras)} "
          f"torch={torch.__version__} host={platform.node()}")  # fmt: skip

    results: dict[str, list[dict]] = {"inference": [], "train": []}
    model.eval()
    base = None
    print(
        f"{'batch':>6} {'s/batch':>10} {'frames/s':>10} {'x batch-1':>10}"
        + (f" {'x paper':>8}" if paper_layout else "")
    )
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        inputs = make_batch(model, batch, args.with_vae, args.device)
        seconds = timed(lambda inputs=inputs: model.predict(inputs), args.device, 1, args.repeats)
        fps = batch / seconds
        base = base or fps
        row = {"batch": batch, "seconds": seconds, "frames_per_s": fps, "ratio": fps / base}
        if paper_layout:
            row["x_paper"] = fps * PAPER_SECONDS_PER_FRAME
        results["inference"].append(row)
        print(f"{batch:>6} {seconds:>10.4f} {fps:>10.1f} {fps / base:>10.2f}"
              + (f" {row['x_paper']:>8.1f}" if paper_layout else ""))  # fmt: skip

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(inputs: ValueBatch) -> None:
        loss = model.loss(inputs)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    base = None
    print(f"{'train':>6} {'s/step':>10} {'samples/s':>10} {'x batch-1':>10}")
    for batch in [int(b) for b in args.train_batch_sizes.split(",")]:
        inputs = train_batch(model, batch, args.device)
        seconds = timed(lambda inputs=inputs: step(inputs), args.device, 1, args.repeats)
        sps = batch / seconds
        base = base or sps
        results["train"].append(
            {"batch": batch, "seconds": seconds, "samples_per_s": sps, "ratio": sps / base}
        )
        print(f"{batch:>6} {seconds:>10.4f} {sps:>10.1f} {sps / base:>10.2f}")
    if args.device.startswith("cuda"):
        print(f"# peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
