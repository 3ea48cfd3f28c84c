"""Classifier-free guidance for the default policy: beta > 1 against beta = 1, once, on a finished main-command run.

    .venv/bin/python scripts/results_cfg.py --run-dir runs/<run> [--beta 1.5]

Takes the policy the run deployed last and its evaluation at beta = 1 (the loop's own, on the run's fixed
evaluation seeds), evaluates the same checkpoint with ``cfg_beta`` = beta on the same seeds through the loop's
episode runner, and writes the paired comparison as the ``cfg-beta`` section of RESULTS.md. The default stays
beta = 1 unless the paired interval is above zero.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from results_sections import write_section  # scripts/ is on sys.path when a script runs

from actors.local import evaluate_policy, sim_arm
from improve.evaluation import paired_comparison, success_interval
from improve.run_state import RunState
from robot_io.config import SimBoxConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--beta", type=float, default=1.5)
    parser.add_argument("--results", type=Path, default=Path("RESULTS.md"))
    args = parser.parse_args()

    state = RunState.load(args.run_dir)
    if state is None:
        raise SystemExit(f"{args.run_dir} has no run_state.json: give the run_dir of a finished vivarl run")
    last = state.latest_round_with("deployed")
    if last is None:
        raise SystemExit(f"{args.run_dir} deployed no policy yet")
    outputs = state.round_outputs(last)
    reference = state.round_outputs(outputs["deployed_eval_round"])["eval_outcomes"]
    seeds = sorted(int(s) for s in reference)
    checkpoint = Path(outputs["deployed_checkpoint"])
    if not checkpoint.is_absolute() and not checkpoint.exists():
        # The run wrote paths relative to the folder it was started in: <that folder>/runs/<run>.
        checkpoint = args.run_dir.resolve().parents[1] / checkpoint
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        guided = evaluate_policy(
            checkpoint,
            str(Path(work) / "store"),
            sim_arm(SimBoxConfig()),
            seeds,
            version=f"{outputs['deployed']}-beta{args.beta}",
            overrides={"cfg_beta": args.beta},
        )
    candidate = {str(s): int(ok) for s, ok in guided.successes.items()}
    c = paired_comparison(reference, candidate)
    low, high = success_interval(sum(candidate.values()), len(candidate))
    base_low, base_high = success_interval(sum(reference.values()), len(reference))
    verdict = (
        f"beta {args.beta} helps: the paired interval is above zero"
        if c.ci_low > 0
        else f"beta {args.beta} does not help here (the paired interval includes or is below zero), so the "
        "default stays cfg_beta = 1.0"
    )
    body = f"""## Classifier-free guidance (cfg-beta)

`.venv/bin/python scripts/results_cfg.py --run-dir {args.run_dir} --beta {args.beta}` on {time.strftime("%Y-%m-%d")}:
the policy the main command deployed last ({outputs["deployed"]}, run {state.run_name}) on the run's
{len(seeds)} fixed evaluation seeds, indicator positive, through the loop's episode runner.
{os.cpu_count()} CPU cores, {time.monotonic() - started:.0f} s.

| cfg_beta | success [95% CI] |
|---|---|
| 1.0 (the loop's own evaluation) | {c.reference_rate:.0%} [{base_low:.0%}, {base_high:.0%}] |
| {args.beta} | {c.candidate_rate:.0%} [{low:.0%}, {high:.0%}] |

Paired on the same seeds: {c.difference * 100:+.0f} points [{c.ci_low * 100:+.0f}, {c.ci_high * 100:+.0f}],
{c.candidate_only} seeds solved only with guidance, {c.reference_only} only without; exact McNemar p {c.p_value:.3f}.
Verdict: {verdict}.
"""
    write_section(args.results, "cfg-beta", body, source="scripts/results_cfg.py")
    print(body)
    print(json.dumps(c.as_dict()))


if __name__ == "__main__":
    main()
