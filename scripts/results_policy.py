"""Policy-extraction comparison on mixed-quality simulator data (tens of minutes; not a test).

Records scripted-expert episodes with its suboptimality knobs on (hesitation, retries, action noise, drops),
labels RECAP advantages with values estimated from the simulator's ground truth
(``learners.policy_labels.neighbour_values``: V(o_t) = mean return of the nearest frames of other episodes in
(progress, proprioception); no learned value model is wired in here), trains plain BC, RECAP at each advantage
horizon N (evaluated with the indicator negative and positive), filtered BC (Delta >= 0) and AWR on the same data
and labels, each with several training seeds, evaluates every policy over the same unseen simulator seeds and
writes a markdown table to stdout and to RESULTS.md (section "Policy extraction").

Every episode, recorded or evaluated, runs through the robot actor's episode loop (``actors.local``: the loop's
``RobotWorker``, behind the safety layer), so a dropped item is recorded as the loop records it: the expert gives up
and holds still until the time limit, and an evaluated policy keeps control until then. Evaluation episodes are
committed to ``<workdir>/eval-store`` (with their seeds, for paired comparisons) and removed once summarised unless
``--keep-eval-episodes`` (about 5 kB per step).

Run: ``.venv/bin/python scripts/results_policy.py [--episodes 60] [--steps 1500] [--eval-episodes 50]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from results_sections import write_section  # scripts/ is on sys.path when a script runs

from actors.local import EvaluationSummary, evaluate_policy, record_demonstrations, sim_arm
from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearner, PolicyLearnerConfig
from policy import PolicyConfig
from replay import ReplayStore
from robot_io.config import ExpertConfig, SimBoxConfig

# No stalls: a stall holds one motionless frame from a stage start to the time limit (hundreds of copies per
# stalled episode, a fifth of all frames at stall 0.1), which outnumbers every other action at that state; the
# loop's corrector takes over after 30 stalled steps, so such stretches do not reach a real store. RESULTS.md
# notes what a stall probability of 0.1 did. A drop now does the same: the actors' loop runs the episode on to the
# time limit while the expert, having given up, holds still (11 of the 60 default episodes drop, adding 3727 such
# frames, 21% of the store); RESULTS.md's table was made by a recorder that stopped at the drop.
EXPERT_KNOBS = ExpertConfig(
    action_noise=0.003,
    hesitation_prob=0.5,
    hesitation_steps=[10, 30],
    retry_prob=0.25,
    drop_prob=0.15,
    stall_prob=0.0,
)
EVAL_SEED_OFFSET = 100_000


def describe(config: PolicyConfig) -> str:
    relative = ", ".join(str(i) for i in config.relative_action_dims or []) or "none"
    return (
        f"{config.head} head, cameras {'+'.join(config.cameras)} {config.image_size}x{config.image_size}, "
        f"chunk {config.chunk_size} with {config.execute_steps} executed, "
        f"action dims relative to the measured pose: {relative}"
    )


def label_run(horizon: int) -> str:
    return f"ground-truth-n{horizon}"


def recorded(url: str) -> bool:
    """The work folder already holds this store's episodes (a rerun with ``--workdir`` keeps them)."""
    return Path(url).is_dir() and bool(ReplayStore.open(url).episode_ids())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=60, help="knob-laden expert episodes to train on")
    parser.add_argument(
        "--eval-episodes", type=int, default=50, help="simulator episodes per evaluated policy"
    )
    parser.add_argument(
        "--clean-episodes",
        type=int,
        default=40,
        help="also train plain BC on this many knob-free expert episodes, as round 0 of the loop does (0: skip)",
    )
    parser.add_argument("--steps", type=int, default=1500, help="gradient steps per policy")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--horizons",
        default="10,50",
        help="comma-separated N of the N-step advantage; RECAP is trained at each, the others use the first",
    )
    parser.add_argument("--train-seeds", type=int, default=2, help="training seeds per method")
    parser.add_argument("--cfg-beta", type=float, default=0.0, help="also evaluate RECAP+ with this CFG beta")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="", help="keep store and checkpoints here (default: a temp dir)")
    parser.add_argument("--out", default="RESULTS.md")
    parser.add_argument(
        "--keep-eval-episodes",
        action="store_true",
        help="keep the evaluation episodes in <workdir>/eval-store",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    horizons = [int(h) for h in args.horizons.split(",")]
    started = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vivarl-results-policy-"))
    # The built-in policy's defaults (cameras, action head, relative actions, encoder) are what is measured.
    policy_config = PolicyConfig()
    sim_config = SimBoxConfig(
        cameras=list(policy_config.cameras), image_height=64, image_width=64, max_steps=400
    )
    store_url = str(workdir / "store")

    if not recorded(store_url):
        episodes = record_demonstrations(store_url, sim_arm(sim_config, EXPERT_KNOBS), range(args.episodes))
        print(
            f"recorded {len(episodes)} episodes, {np.mean([e.outcome.value == 'success' for e in episodes]):.0%} "
            f"successful, mean length {np.mean([e.length for e in episodes]):.0f} "
            f"({time.monotonic() - started:.0f} s)"
        )
    store = ReplayStore.open(store_url)
    data_success = np.mean([r.meta.outcome.value == "success" for r in store.records().values()])
    for horizon in horizons:
        if label_run(horizon) not in store.derived_keys("indicator"):
            label_store(store, LabellingConfig(run=label_run(horizon), horizon=horizon), log=print)

    # name -> (extraction, labelling run, store)
    methods: dict[str, tuple[str, str | None, str]] = {"bc": ("bc", None, store_url)}
    for horizon in horizons:
        methods[f"recap-n{horizon}"] = ("recap", label_run(horizon), store_url)
    methods["filtered_bc"] = ("filtered_bc", label_run(horizons[0]), store_url)
    methods["awr"] = ("awr", label_run(horizons[0]), store_url)
    if args.clean_episodes:
        # Round 0 of the loop learns from knob-free demonstrations: the baseline every later round improves on.
        clean_url = str(workdir / "clean-store")
        if not recorded(clean_url):
            first = EVAL_SEED_OFFSET // 2
            seeds = range(first, first + args.clean_episodes)
            record_demonstrations(clean_url, sim_arm(sim_config, ExpertConfig()), seeds)
        methods = {"clean_bc": ("bc", None, clean_url), **methods}
    checkpoints: dict[tuple[str, int], str] = {}
    learning_rate = 0.0
    for name, (extraction, run, url) in methods.items():
        for seed in range(args.train_seeds):
            config = PolicyLearnerConfig(
                store_url=url,
                checkpoint_dir=str(workdir / f"policy-{name}-seed{seed}"),
                policy=policy_config,
                extraction=extraction,
                labelling_run=run,
                steps=args.steps,
                batch_size=args.batch_size,
                log_every=args.steps,
                seed=seed,
            )
            learning_rate = config.learning_rate
            result = PolicyLearner(config).train_round(0)
            checkpoints[name, seed] = result.checkpoint
            print(
                f"{name} seed {seed}: trained in {result.wall_time_s:.0f} s, "
                f"final loss {np.mean(result.losses[-100:]):.3f}"
            )

    evaluations = [("plain BC", "bc", {})]
    for horizon in horizons:
        evaluations += [
            (f"RECAP N={horizon}, indicator negative", f"recap-n{horizon}", {"deploy_indicator": "negative"}),
            (f"RECAP N={horizon}, indicator positive", f"recap-n{horizon}", {"deploy_indicator": "positive"}),
        ]
    evaluations += [
        (f"filtered BC (Delta >= 0, N={horizons[0]})", "filtered_bc", {}),
        (f"AWR (tau 1, cap 2, N={horizons[0]})", "awr", {}),
    ]
    if args.clean_episodes:
        evaluations.insert(0, (f"plain BC on {args.clean_episodes} knob-free demonstrations", "clean_bc", {}))
    if args.cfg_beta:
        evaluations.append(
            (
                f"RECAP N={horizons[0]} positive, CFG beta {args.cfg_beta}",
                f"recap-n{horizons[0]}",
                {"cfg_beta": args.cfg_beta},
            )
        )
    seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + args.eval_episodes)
    eval_url, arm = str(workdir / "eval-store"), sim_arm(sim_config)
    rows: list[tuple[str, list[EvaluationSummary]]] = []
    for label, name, overrides in evaluations:
        results = []
        for seed in range(args.train_seeds):
            version = f"{name}-seed{seed}" + "".join(f"-{k}={v}" for k, v in overrides.items())
            results.append(
                evaluate_policy(
                    checkpoints[name, seed], eval_url, arm, seeds, version=version, overrides=overrides
                )
            )
            if not args.keep_eval_episodes:
                shutil.rmtree(eval_url)
        rows.append((label, results))
        print(f"{label}: success {[f'{r.success_rate:.0%}' for r in results]}")

    minutes = (time.monotonic() - started) / 60
    lines = [
        "## Policy extraction",
        "",
        f"Same {args.episodes} scripted-expert episodes for every method but the knob-free row "
        f"({data_success:.0%} successful; knobs: action_noise {EXPERT_KNOBS.action_noise}, "
        f"hesitation {EXPERT_KNOBS.hesitation_prob} per stage for {EXPERT_KNOBS.hesitation_steps[0]}-"
        f"{EXPERT_KNOBS.hesitation_steps[1]} steps, retry {EXPERT_KNOBS.retry_prob}, drop {EXPERT_KNOBS.drop_prob}, "
        f"stall {EXPERT_KNOBS.stall_prob}); built-in policy ({describe(policy_config)}), {args.steps} steps of "
        f"batch {args.batch_size} at learning rate {learning_rate:g}, {args.train_seeds} training seeds per "
        f"method; every policy evaluated on the same {args.eval_episodes} unseen simulator seeds. Recorded and "
        "evaluated through the robot actor's episode loop (`actors.local`), which runs an episode with a dropped "
        "item on to the time limit.",
        "Advantages: RECAP N-step at each N shown, values from the simulator's ground truth (mean return of the "
        "16 nearest frames of other episodes in progress and proprioception; not a learned value model), 30% of "
        f"frames positive. Filtered BC and AWR use the N={horizons[0]} advantage as Delta. The control rate is "
        f"{sim_config.control_hz:g} Hz, so N=10 looks 1 s ahead and N=50 5 s.",
        f"Run on {os.cpu_count()} CPU cores, {args.threads} torch thread(s), {minutes:.1f} min in all.",
        "",
        "| method | success rate (mean) | per training seed | mean final progress | mean steps (successes) |",
        "|---|---|---|---|---|",
    ]
    for label, results in rows:
        lengths = [r.mean_steps_success for r in results if not np.isnan(r.mean_steps_success)]
        steps = f"{np.mean(lengths):.0f}" if lengths else "-"
        per_seed = ", ".join(f"{r.success_rate:.0%}" for r in results)
        lines.append(
            f"| {label} | {np.mean([r.success_rate for r in results]):.0%} | {per_seed} | "
            f"{np.mean([r.mean_progress for r in results]):.2f} | {steps} |"
        )
    table = "\n".join(lines)
    print(table)
    write_section(Path(args.out), "policy-extraction", table, source="scripts/results_policy.py")


if __name__ == "__main__":
    main()
