"""How close are a run's advantage labels to the ones ground-truth progress gives? A training-side check of the
labelling rule, independent of any evaluation result.

For every round r >= 1 of a finished simulator run (``vivarl`` or one run of ``vivarl-study``), the training
episodes of rounds 0..r are labelled, in memory, by each candidate rule:

- ``v<k> N=<n>``: value version k (every version published so far) with the round's N-step horizon;
- ``v<k> MC``: the same version with a horizon as long as the episode (A = G_t - V_t);
- ``outcome``: no values (every frame of a success and every correction positive);

and compared with the labels RECAP + ground-truth progress gives the same frames (the ``recap_progress`` study
variant, the value side's ceiling): Cohen's kappa on the frames of round r's rollouts that no human corrected
(corrections are positive under every rule). The rule the run used is marked.

    .venv/bin/python scripts/label_agreement.py --run-dir runs/<run>
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from improve.config import VivarlConfig, to_dataclass
from improve.run_state import RunState
from improve.study_report import write_section_first
from learners.policy_labels import LabellingConfig, advantages_and_indicators, outcome_indicator, task_lengths
from learners.value_learner import ValueLearner
from replay import TRAINING_PURPOSES, EpisodeFilter, FrameIndex, Outcome, ReplayStore
from replay.schema import spans_to_mask
from valuemodel import ValueModelConfig

HORIZONS_S = (1.0, 3.0, 10.0)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (observed - chance) / (1 - chance) if chance < 1 else float("nan")


def indicators(store: ReplayStore, records: list, config: LabellingConfig, lengths: dict[str, int]) -> dict:
    """Episode id -> indicators under ``config`` (label_store's rule, without writing anything)."""
    if config.outcome_only:
        return {r.meta.episode_id: outcome_indicator(r) for r in records}
    _, flat, _ = advantages_and_indicators(store, records, config, lengths)
    out, start = {}, 0
    for record in records:
        out[record.meta.episode_id] = flat[start : start + record.meta.length]
        start += record.meta.length
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--results", type=Path, help="write the table as a section of this RESULTS.md")
    args = parser.parse_args()
    run_dir = args.run_dir
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)
    state = RunState.load(run_dir)
    if state is None:
        raise SystemExit(f"{run_dir} has no run_state.json: point --run-dir at a vivarl run")
    store_url = str(run_dir / "replay")
    # The run's config as the driver resolved it (the value learner's time limit filled from the arms, run seed).
    run_config = to_dataclass(OmegaConf.merge(OmegaConf.structured(VivarlConfig), cfg))
    learner_config = replace(
        run_config.value_learner, store_url=store_url, checkpoint_root=str(run_dir / "value_model")
    )
    learner = ValueLearner(learner_config, ValueModelConfig.from_dict(cfg["valuemodel"]))
    store = ReplayStore.open(store_url)
    label_fields = {f.name for f in fields(LabellingConfig)}
    base = LabellingConfig(
        **{k: v for k, v in cfg["labelling"].items() if k in label_fields and k not in ("run", "value_key")},
        run="agreement",
    )
    if learner_config.time_limit and not base.max_episode_length:
        # As the round driver labels: L_max is the value targets' time limit.
        base = replace(base, max_episode_length={cfg["task"]["name"]: learner_config.time_limit})
    kind = cfg["valuemodel"]["kind"]
    hz = store.schema.control_hz
    horizons = {f"{seconds:g} s": max(1, round(seconds * hz)) for seconds in HORIZONS_S}
    rows = []
    rounds = sorted(int(r) for r in state.rounds)
    for r in rounds:
        outputs = state.round_outputs(r)
        if r == 0 or "labelling_run" not in outputs:
            continue
        index = FrameIndex(store, EpisodeFilter(purposes=TRAINING_PURPOSES, rounds=tuple(range(r + 1))))
        index.refresh()
        records = sorted(
            (x for x in index.records.values() if x.meta.outcome is not Outcome.UNLABELLED),
            key=lambda x: x.meta.episode_id,
        )
        lengths = task_lengths(records, base)
        newest = [x for x in records if x.meta.round == r]
        masks = {x.meta.episode_id: ~spans_to_mask(x.intervention_spans, x.meta.length) for x in newest}

        def kappa(labels: dict, reference: dict, masks: dict = masks) -> float:
            return cohen_kappa(
                np.concatenate([labels[e][m] for e, m in masks.items()]),
                np.concatenate([reference[e][m] for e, m in masks.items()]),
            )

        truth = {
            name: indicators(store, records, replace(base, horizon=n, value_key=None), lengths)
            for name, n in {**horizons, "episode": max(lengths.values())}.items()
        }
        configured = round(base.horizon_s * hz) if base.horizon_s is not None else base.horizon
        deployed_rule = indicators(
            store, records, replace(base, horizon=max(1, configured), value_key=None), lengths
        )
        rows.append(
            {
                "round": r,
                "rule": "outcome",
                "same": float("nan"),
                "loop": kappa(
                    indicators(store, records, replace(base, outcome_only=True), lengths), deployed_rule
                ),
                "used": outputs.get("value_used") is None,
            }
        )
        for name, labels in truth.items():
            agreement = kappa(labels, deployed_rule)
            rows.append(
                {
                    "round": r,
                    "rule": f"ground truth N={name}",
                    "same": agreement,
                    "loop": agreement,
                    "used": False,
                }
            )
        run_horizon = outputs.get("advantage_horizon")
        for k in rounds[: rounds.index(r) + 1]:
            version = state.round_outputs(k).get("value_version")
            if version is None:
                continue
            learner.label(int(version), episode_ids=[x.meta.episode_id for x in records])
            key = learner_config.label_key.format(version=int(version), kind=kind)
            passed = bool(state.round_outputs(k).get("value_quality", {}).get("passed"))
            for name, n in {**horizons, "episode": None}.items():
                rule = (
                    replace(base, value_key=key, learned_value_horizon="episode")
                    if n is None
                    else replace(base, value_key=key, horizon=n, learned_value_horizon="horizon")
                )
                labels = indicators(store, records, rule, lengths)
                rows.append(
                    {
                        "round": r,
                        "rule": f"v{version} N={name}" + ("" if passed else " (below floor)"),
                        "same": kappa(labels, truth[name]),
                        "loop": kappa(labels, deployed_rule),
                        "used": outputs.get("value_used") == version
                        and (run_horizon == "episode" if n is None else run_horizon == n),
                    }
                )
    body = report(rows, run_dir, cfg)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.results:
        write_section_first(args.results, "label-agreement", body, "scripts/label_agreement.py")


def report(rows: list[dict], run_dir: Path, cfg: dict) -> str:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.to_container(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
    names = [f"{seconds:g} s" for seconds in HORIZONS_S] + ["episode"]
    lines = [
        "## Label agreement: a learned value's advantages against ground truth's (label-agreement)",
        "",
        "Generated by `scripts/label_agreement.py` from one finished run; command:",
        "",
        "```bash",
        f".venv/bin/python scripts/label_agreement.py --run-dir {run_dir} --results RESULTS.md",
        "```",
        "",
        "The run: `vivarl " + " ".join(overrides) + "`.",
        "",
        f"Value model `{cfg['valuemodel']['kind']}`. For every round r >= 1, the training "
        "episodes of rounds 0..r are labelled in memory with every value version published so far, at each "
        "horizon N, and compared with the labels that ground-truth progress values give at the same N (Cohen's "
        "kappa on round r's rollout frames no human corrected; 0 is chance, 1 identical). The last column "
        "compares with the labels of RECAP + ground-truth progress at the configured horizon (1 s; the recap_progress "
        "study variant); `outcome` is labelling by outcome alone. `*`: the labels the run used; below floor: "
        "the version failed the run's quality floor. The `ground truth` row holds ground-truth values' labels at "
        "each N against themselves at 1 s: how much labels move with the horizon alone.",
        "",
        "| round | labels from | "
        + " | ".join(f"N = {n}" for n in names)
        + " | episode vs ground truth at 1 s |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    by_source: dict[tuple[int, str], dict[str, dict]] = {}
    for row in rows:
        source, _, horizon = row["rule"].partition(" N=")
        by_source.setdefault((row["round"], source), {})[horizon.replace(" (below floor)", "") or "-"] = row
        if "(below floor)" in row["rule"]:
            by_source[(row["round"], source)]["below"] = {}
    for (r, source), cells in by_source.items():
        if source == "outcome":
            row = cells["-"]
            values = [""] * len(names) + [f"{row['loop']:.2f}"]
            label = "outcome" + (" *" if row["used"] else "")
        else:
            values = [f"{cells[n]['same']:.2f}" + (" *" if cells[n]["used"] else "") for n in names]
            values.append(f"{cells['episode']['loop']:.2f}")
            label = source + (" (below floor)" if "below" in cells else "")
        lines.append(f"| {r} | {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
