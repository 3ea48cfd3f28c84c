"""Policy-extraction comparison on mixed-quality simulator data (minutes; not a test).

Records scripted-expert episodes with its suboptimality knobs on (hesitation, retries, action noise, drops,
stalls), labels RECAP advantages with values estimated from ground-truth progress (``progress_binned_values``:
V(progress) = mean normalised return-to-go of all frames at that progress; no learned value model is wired in
here), trains plain BC, RECAP (indicator-conditioned, evaluated with the indicator negative and positive),
filtered BC (Delta >= 0) and AWR on the same data and labels, evaluates each over seeded simulator episodes and
writes a markdown table to stdout and to RESULTS.md (section "Policy extraction").

Run: ``.venv/bin/python scripts/results_policy.py [--episodes 80] [--steps 2500] [--eval-episodes 50]``
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearner, PolicyLearnerConfig
from learners.policy_sim_data import evaluate_policy, open_sim_store, record_expert_episodes
from policy import PolicyConfig, load_policy
from robot_io.config import ExpertConfig, SimBoxConfig

SECTION_START = "<!-- section: policy-extraction (scripts/results_policy.py) -->"
SECTION_END = "<!-- end section: policy-extraction -->"
EXPERT_KNOBS = ExpertConfig(
    action_noise=0.003, hesitation_prob=0.4, retry_prob=0.25, drop_prob=0.15, stall_prob=0.1
)
EVAL_SEED_OFFSET = 100_000


def write_section(path: Path, body: str) -> None:
    """Replace this script's delimited section of ``path`` (or append it), leaving other sections alone."""
    section = f"{SECTION_START}\n{body.rstrip()}\n{SECTION_END}\n"
    text = path.read_text() if path.exists() else "# vivarl results\n\n"
    pattern = re.compile(re.escape(SECTION_START) + r".*?" + re.escape(SECTION_END) + r"\n?", re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text)


def describe(config: PolicyConfig) -> str:
    relative = ", ".join(str(i) for i in config.relative_action_dims) or "none"
    return (
        f"{config.head} head, cameras {'+'.join(config.cameras)} {config.image_size}x{config.image_size}, "
        f"chunk {config.chunk_size} with {config.execute_steps} executed, "
        f"action dims relative to the measured pose: {relative}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=80, help="expert episodes to train on")
    parser.add_argument(
        "--eval-episodes", type=int, default=50, help="simulator episodes per evaluated policy"
    )
    parser.add_argument(
        "--clean-episodes",
        type=int,
        default=40,
        help="also train plain BC on this many knob-free expert episodes, as round 0 of the loop does (0: skip)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per policy")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=50, help="N of the N-step advantage")
    parser.add_argument("--cfg-beta", type=float, default=0.0, help="also evaluate RECAP+ with this CFG beta")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default="", help="keep store and checkpoints here (default: a temp dir)")
    parser.add_argument("--out", default="RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vivarl-results-policy-"))
    # The built-in policy's defaults (cameras, action head, relative actions, encoder) are what is measured.
    policy_config = PolicyConfig()
    sim_config = SimBoxConfig(
        cameras=list(policy_config.cameras), image_height=64, image_width=64, max_steps=400
    )
    store_url = str(workdir / "store")

    store = open_sim_store(store_url, sim_config)
    if not store.episode_ids():
        episodes = record_expert_episodes(store, sim_config, EXPERT_KNOBS, range(args.episodes))
        print(
            f"recorded {len(episodes)} episodes, {np.mean([e.success for e in episodes]):.0%} successful, "
            f"mean length {np.mean([e.length for e in episodes]):.0f} ({time.monotonic() - started:.0f} s)"
        )
    data_success = np.mean([r.meta.outcome.value == "success" for r in store.records().values()])
    label_store(store, LabellingConfig(run="progress-n50", horizon=args.horizon), log=print)

    methods = {"bc": None, "recap": "progress-n50", "filtered_bc": "progress-n50", "awr": "progress-n50"}
    stores = dict.fromkeys(methods, store_url)
    if args.clean_episodes:
        # Round 0 of the loop learns from knob-free demonstrations: the baseline every later round improves on.
        clean_url = str(workdir / "clean-store")
        clean = open_sim_store(clean_url, sim_config)
        if not clean.episode_ids():
            first = EVAL_SEED_OFFSET // 2
            record_expert_episodes(
                clean, sim_config, ExpertConfig(), range(first, first + args.clean_episodes)
            )
        methods["clean_bc"], stores["clean_bc"] = None, clean_url
    checkpoints = {}
    learning_rate = 0.0
    for extraction, run in methods.items():
        config = PolicyLearnerConfig(
            store_url=stores[extraction],
            checkpoint_dir=str(workdir / f"policy-{extraction}"),
            policy=policy_config,
            extraction="bc" if extraction == "clean_bc" else extraction,
            labelling_run=run,
            steps=args.steps,
            batch_size=args.batch_size,
            log_every=500,
        )
        learning_rate = config.learning_rate
        result = PolicyLearner(config).train_round(0)
        checkpoints[extraction] = result.checkpoint
        print(
            f"{extraction}: trained in {result.wall_time_s:.0f} s, final loss {np.mean(result.losses[-100:]):.3f}"
        )

    evaluations = [
        ("plain BC", "bc", {}),
        ("RECAP, indicator negative", "recap", {"deploy_indicator": "negative"}),
        ("RECAP, indicator positive", "recap", {"deploy_indicator": "positive"}),
        ("filtered BC (Delta >= 0)", "filtered_bc", {}),
        ("AWR (tau 1, cap 2)", "awr", {}),
    ]
    if args.clean_episodes:
        evaluations.insert(0, (f"plain BC on {args.clean_episodes} knob-free demonstrations", "clean_bc", {}))
    if args.cfg_beta:
        evaluations.append(
            (f"RECAP positive, CFG beta {args.cfg_beta}", "recap", {"cfg_beta": args.cfg_beta})
        )
    seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + args.eval_episodes)
    rows = []
    for name, extraction, overrides in evaluations:
        result = evaluate_policy(load_policy(checkpoints[extraction], **overrides), sim_config, seeds)
        rows.append((name, result))
        print(f"{name}: success {result.success_rate:.0%}, progress {result.mean_progress:.2f}")

    minutes = (time.monotonic() - started) / 60
    lines = [
        "## Policy extraction",
        "",
        f"Same {args.episodes} scripted-expert episodes for every method but the knob-free row "
        f"({data_success:.0%} successful; knobs: "
        f"action_noise {EXPERT_KNOBS.action_noise}, hesitation {EXPERT_KNOBS.hesitation_prob}, "
        f"retry {EXPERT_KNOBS.retry_prob}, drop {EXPERT_KNOBS.drop_prob}, stall {EXPERT_KNOBS.stall_prob}); "
        f"built-in policy ({describe(policy_config)}), {args.steps} steps of batch {args.batch_size} each at "
        f"learning rate {learning_rate:g}; evaluated on {args.eval_episodes} unseen simulator seeds.",
        f"Advantages: RECAP N={args.horizon}, values from ground-truth progress (progress-binned mean return; "
        "not a learned value model), 30% of frames positive. Filtered BC and AWR use the same advantage as Delta.",
        f"Run on {os.cpu_count()} CPU cores, {args.threads} torch thread(s), {minutes:.1f} min in all.",
        "",
        "| method | success rate | mean final progress | mean steps (successes) |",
        "|---|---|---|---|",
    ]
    for name, r in rows:
        steps = "-" if np.isnan(r.mean_steps_success) else f"{r.mean_steps_success:.0f}"
        lines.append(f"| {name} | {r.success_rate:.0%} | {r.mean_progress:.2f} | {steps} |")
    table = "\n".join(lines)
    print(table)
    write_section(Path(args.out), table)


if __name__ == "__main__":
    main()
