"""What a `vivarl-study` shows, read back from each run's run_state.json: per-round success with intervals, paired
tests on the shared evaluation seeds, the goals, a plot, and one generated RESULTS.md section.

Nothing here is stored beside the runs: the section and the plot are regenerated from the run states (and the
study_run.json the study writes per run: its wall time and the machine's cores). A requested run that is missing
or unfinished is an error, never a smaller study.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from improve.evaluation import PairedComparison, evaluation_seeds, paired_comparison, success_interval
from improve.run_state import STAGES, RunState, RunStateError

if TYPE_CHECKING:
    from improve.study import PlannedRun, StudyConfig

RECORD_FILE = "study_run.json"
PLOT_FILE = "success_per_round.png"
SOURCE = "vivarl-study"
# The goals of issue 22, about the default system against its round 0 and its baselines.
GOAL_VARIANT = "recap_viva"
GOAL_BASELINES = ("recap_static", "bc_corrections")
GOAL_GAIN = 0.25
GOAL_THROUGHPUT = 2.0


class StudyError(RuntimeError):
    pass


def unfinished_rounds(state: RunState, rounds: int) -> list[int]:
    """Rounds of 0 to ``rounds`` with a stage not done (a round's metrics are written after its last stage)."""
    return [r for r in range(rounds + 1) if not all(state.is_done(r, stage) for stage in STAGES)]


def is_finished(run_dir: Path, rounds: int) -> bool:
    """Every round, 0 to ``rounds``, evaluated and through the gate."""
    state = RunState.load(run_dir)
    return state is not None and not unfinished_rounds(state, rounds)


@dataclass
class RoundResult:
    outcomes: dict[str, int]
    metrics: dict[str, float]
    seconds: float
    promoted: bool | None

    @property
    def rate(self) -> float:
        return sum(self.outcomes.values()) / len(self.outcomes)

    @property
    def interval(self) -> tuple[float, float]:
        return success_interval(sum(self.outcomes.values()), len(self.outcomes))

    def metric(self, name: str) -> float:
        return float(self.metrics.get(name, math.nan))

    @property
    def interventions_per_success(self) -> float:
        """Corrected steps of the round's collection per successful collected episode (issue 24's measure of
        what a success costs the operator); nan without successes."""
        episodes = self.metric("collect/episodes")
        steps = episodes * self.metric("collect/mean_length")
        labelled = episodes - (
            self.metric("collect/unlabelled") if "collect/unlabelled" in self.metrics else 0.0
        )
        successes = self.metric("collect/success_rate") * labelled
        return self.metric("collect/intervention_rate") * steps / successes if successes > 0 else math.nan


@dataclass
class RunResult:
    variant: str
    seed: int
    rounds: list[RoundResult]
    wall_s: float
    cores: set[int]
    # (start, end) epoch seconds of each attempt, for the study's elapsed time when runs overlap.
    spans: list[tuple[float, float]] = field(default_factory=list)
    parallel_runs: set[int] = field(default_factory=set)


def load_run(run: PlannedRun, eval_seed_base: int) -> RunResult:
    """One run's rounds from its run_state.json; a StudyError says what is missing."""
    try:
        state = RunState.load(run.run_dir)
    except RunStateError as err:
        raise StudyError(str(err)) from None
    if state is None:
        raise StudyError(f"{run.run_dir} has no run_state.json (not run yet)")
    missing = unfinished_rounds(state, run.loop.rounds)
    if missing:
        raise StudyError(f"{run.run_dir}: rounds {missing} not finished")
    seeds = {str(s) for s in evaluation_seeds(eval_seed_base, run.loop.eval_episodes)}
    rounds = []
    for r in range(run.loop.rounds + 1):
        outputs = state.rounds.get(str(r), {})
        outcomes = {str(k): int(v) for k, v in (outputs.get("eval_outcomes") or {}).items()}
        if set(outcomes) != seeds:
            raise StudyError(
                f"{run.run_dir}: round {r} was evaluated on {len(outcomes)} seeds, not the study's "
                f"{len(seeds)} from {eval_seed_base} (run with another loop.eval_seed_base or eval_episodes?)"
            )
        gate = outputs.get("gate") or {}
        seconds = sum(state.stage_seconds.get(str(r), {}).values())
        rounds.append(RoundResult(outcomes, outputs.get("metrics") or {}, seconds, gate.get("promoted")))
    record_path = run.run_dir / RECORD_FILE
    attempts = json.loads(record_path.read_text())["attempts"] if record_path.exists() else []
    wall_s = sum(a["wall_s"] for a in attempts) if attempts else sum(r.seconds for r in rounds)
    cores = {a["cpu_count"] for a in attempts if a.get("cpu_count")}
    spans = [(a["started_at"], a["started_at"] + a["wall_s"]) for a in attempts if "started_at" in a]
    parallel = {int(a.get("parallel_runs", 1)) for a in attempts}
    return RunResult(run.variant, run.seed, rounds, wall_s, cores, spans, parallel)


def elapsed_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """The wall time covered by at least one of the spans (overlapping runs count once)."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass(frozen=True)
class OverSeeds:
    """The mean of per-run-seed differences, with a t interval and a one-sample t test over run seeds."""

    n: int
    mean: float
    low: float
    high: float
    p_value: float


def over_seeds(differences: Sequence[float], confidence: float = 0.95) -> OverSeeds:
    n, mean = len(differences), float(np.mean(differences))
    if n < 2:
        return OverSeeds(n, mean, math.nan, math.nan, math.nan)
    sem = float(stats.sem(differences))
    if sem == 0.0:  # every seed moved by the same amount: no spread to test against
        return OverSeeds(n, mean, mean, mean, math.nan)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return OverSeeds(n, mean, float(low), float(high), float(stats.ttest_1samp(differences, 0.0).pvalue))


@dataclass
class Comparison:
    candidate: str
    reference: str
    per_seed: dict[int, PairedComparison]
    seeds: OverSeeds


class StudyResults:
    """Every run of a study, complete: variants x run seeds, rounds 0 to the final round."""

    def __init__(self, runs: dict[tuple[str, int], RunResult], variants: list[str], seeds: list[int]) -> None:
        self.runs, self.variants, self.seeds = runs, variants, seeds
        finals = {len(run.rounds) - 1 for run in runs.values()}
        if len(finals) != 1:
            raise StudyError(
                f"the runs have different numbers of rounds ({sorted(finals)}); give them the same"
            )
        self.final = finals.pop()

    def rounds(self, variant: str, r: int) -> list[RoundResult]:
        return [self.runs[variant, seed].rounds[r] for seed in self.seeds]

    def mean(self, variant: str, r: int, metric: str) -> float:
        return float(np.mean([result.metric(metric) for result in self.rounds(variant, r)]))

    def gain(self, variant: str, seed: int) -> PairedComparison:
        """Final round against round 0 of one run, on the same evaluation seeds."""
        rounds = self.runs[variant, seed].rounds
        return paired_comparison(rounds[0].outcomes, rounds[self.final].outcomes)

    def compare(self, candidate: str, reference: str) -> Comparison:
        per_seed = {
            seed: paired_comparison(
                self.runs[reference, seed].rounds[self.final].outcomes,
                self.runs[candidate, seed].rounds[self.final].outcomes,
            )
            for seed in self.seeds
        }
        rates = [c.candidate_rate - c.reference_rate for c in per_seed.values()]
        return Comparison(candidate, reference, per_seed, over_seeds(rates))


def load_study(study: StudyConfig, runs: Sequence[PlannedRun]) -> StudyResults:
    """All runs or an error listing every one that is missing or unfinished (a study is never reported short)."""
    results, problems = {}, []
    for run in runs:
        try:
            results[run.variant, run.seed] = load_run(run, study.eval_seed_base)
        except StudyError as err:
            problems.append(str(err))
    if problems:
        raise StudyError(
            "the study is incomplete, so no report is written:\n  "
            + "\n  ".join(problems)
            + "\nrun the same "
            "command without study.report_only to finish these runs, or leave their seeds out of study.run_seeds"
        )
    return StudyResults(results, list(study.variants), list(study.run_seeds))


# -- goals ------------------------------------------------------------------------------------------------------
@dataclass
class Goal:
    text: str
    met: bool | None  # None: the study cannot tell (a variant not run, too few rounds)
    detail: str


def goals(results: StudyResults) -> list[Goal]:
    texts = (
        f"{GOAL_VARIANT} final success >= round 0 + {100 * GOAL_GAIN:.0f} points on every run seed, paired interval above zero",
        f"successes per robot-hour ({GOAL_VARIANT}, evaluation) at the final round >= {GOAL_THROUGHPUT:g}x round 0",
        f"{GOAL_VARIANT} final success >= {' and >= '.join(GOAL_BASELINES)}, paired over run seeds",
        f"intervention rate ({GOAL_VARIANT}) falls round over round",
    )
    if GOAL_VARIANT not in results.variants:
        return [Goal(text, None, f"{GOAL_VARIANT} not in this study") for text in texts]
    checks = (_goal_gain, _goal_throughput, _goal_baselines, _goal_interventions)
    return [Goal(text, *check(results)) for text, check in zip(texts, checks, strict=True)]


def _goal_gain(results: StudyResults) -> tuple[bool | None, str]:
    if results.final == 0:
        return None, "no improvement round"
    gains = {seed: results.gain(GOAL_VARIANT, seed) for seed in results.seeds}
    met = all(g.difference >= GOAL_GAIN - 1e-9 and g.ci_low > 0 for g in gains.values())
    return met, "; ".join(f"seed {seed}: {_diff(g)}" for seed, g in gains.items())


def _goal_throughput(results: StudyResults) -> tuple[bool | None, str]:
    if results.final == 0:
        return None, "no improvement round"
    first, final = (results.mean(GOAL_VARIANT, r, "eval/successes_per_hour") for r in (0, results.final))
    per_seed = ", ".join(
        f"{rounds[0].metric('eval/successes_per_hour'):.0f} -> {rounds[-1].metric('eval/successes_per_hour'):.0f}"
        for rounds in (results.runs[GOAL_VARIANT, seed].rounds for seed in results.seeds)
    )
    ratio = f"{final / first:.2f}x" if first > 0 else "round 0 had none"
    return final > 0 and final >= GOAL_THROUGHPUT * first, (
        f"mean {first:.0f} -> {final:.0f} per robot-hour, {ratio}; per run seed {per_seed}"
    )


def _goal_baselines(results: StudyResults) -> tuple[bool | None, str]:
    absent = [b for b in GOAL_BASELINES if b not in results.variants]
    if absent:
        return None, f"{', '.join(absent)} not in this study"
    comparisons = [results.compare(GOAL_VARIANT, b) for b in GOAL_BASELINES]
    met = all(c.seeds.mean >= 0 for c in comparisons)
    return met, "; ".join(f"vs {c.reference}: {_over_seeds(c.seeds)}" for c in comparisons)


def _goal_interventions(results: StudyResults) -> tuple[bool | None, str]:
    if results.final < 2:
        return None, "it needs 2 improvement rounds or more: round 0 collects demonstrations"
    rates = [results.mean(GOAL_VARIANT, r, "collect/intervention_rate") for r in range(1, results.final + 1)]
    met = all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False))
    return met, "mean over run seeds, rounds 1-" + f"{results.final}: " + ", ".join(_pct(x) for x in rates)


# -- markdown -----------------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _points(x: float) -> str:
    return "-" if x != x else f"{round(100 * x) + 0:+d}"  # + 0: no "-0"


def _p(p: float) -> str:
    return "-" if p != p else f"{p:.3f}"


def _diff(c: PairedComparison) -> str:
    return f"{_points(c.difference)} points [{_points(c.ci_low)}, {_points(c.ci_high)}], p {_p(c.p_value)}"


def _over_seeds(s: OverSeeds) -> str:
    if s.n < 2:
        return f"{_points(s.mean)} points (1 run seed: no interval over seeds)"
    return f"{_points(s.mean)} points over {s.n} run seeds, t 95% [{_points(s.low)}, {_points(s.high)}], p {_p(s.p_value)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _sizes(loop: Any) -> list[str]:
    return [str(n) for n in (loop.rounds, loop.demo_episodes, loop.episodes_per_round, loop.eval_episodes)]


def _hours(minutes: float) -> str:
    return f"{minutes / 60:.1f} h" if minutes >= 60 else f"{minutes:.0f} min"


def _header(study: StudyConfig, runs: Sequence[PlannedRun], results: StudyResults, command: str) -> list[str]:
    """The command, seeds, machine and wall time, and each variant's overrides and sizes."""
    cores = sorted(set().union(*(run.cores for run in results.runs.values())))
    counts = sorted({run.loop.eval_episodes for run in runs})
    base = study.eval_seed_base
    seeds = (
        f"{counts[0]} seeds, {base} to {base + counts[0] - 1}" if len(counts) == 1 else "per variant (table)"
    )
    spans = [span for run in results.runs.values() for span in run.spans]
    run_minutes = sum(run.wall_s for run in results.runs.values()) / 60
    # Runs from before study_run.json recorded their spans count one after another.
    minutes = elapsed_seconds(spans) / 60 if spans else run_minutes
    at_once = sorted(set().union(*(run.parallel_runs for run in results.runs.values())) or {1})
    lines = [
        f"## Improvement-loop study ({study.section})",
        "",
        f"Generated by `{SOURCE}` from each run's run_state.json; regenerate it without running anything with the "
        "same command and `study.report_only=true`. Command:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Each (variant, run seed) is one run of the main command, {' / '.join(map(str, at_once))} at a time: `vivarl run_dir={study.dir}"
        f"/<variant>/seed<k> loop.seed=<k> loop.eval_seed_base={base} <variant's overrides> <study overrides>`; "
        f"study overrides: {' '.join(f'`{o}`' for o in study.overrides) or 'none'}.",
        f"Run seeds: {', '.join(map(str, results.seeds))}. Evaluation seeds: {seeds} (base {base}), the same for "
        "every round, variant and run seed; each round evaluates the policy it trained.",
        f"Wall time: {_hours(minutes)} with a run under way (the runs' own times add up to "
        f"{_hours(run_minutes)}), on {' / '.join(map(str, cores)) or 'an unrecorded number of'} CPU cores.",
        "",
    ]
    loops = {run.variant: run.loop for run in runs}
    rows = [
        [v, " ".join(f"`{o}`" for o in study.variant_overrides[v]) or "(none)", *_sizes(loops[v]),
         f"{np.mean([results.runs[v, s].wall_s for s in results.seeds]) / 60:.0f}"]
        for v in results.variants
    ]  # fmt: skip
    return lines + _table(
        ("variant", "overrides", "rounds", "demos", "rollouts/round", "eval episodes", "min/run"), rows
    )


def _round_rows(results: StudyResults) -> list[list[str]]:
    rows = []
    for variant in results.variants:
        for r in range(results.final + 1):
            rounds = results.rounds(variant, r)
            per_seed = ", ".join(
                f"{_pct(x.rate)} [{_pct(x.interval[0])}, {_pct(x.interval[1])}]" for x in rounds
            )
            promoted = [x.promoted for x in rounds if x.promoted is not None]
            rows.append([
                variant, str(r), _pct(float(np.mean([x.rate for x in rounds]))), per_seed,
                f"{results.mean(variant, r, 'eval/successes_per_hour'):.0f}",
                _pct(results.mean(variant, r, "collect/intervention_rate")),
                f"{np.mean([x.interventions_per_success for x in rounds]):.0f}",
                f"{sum(promoted)}/{len(promoted)}" if promoted else "-",
                f"{np.mean([x.seconds for x in rounds]) / 60:.1f}",
            ])  # fmt: skip
    return rows


def _comparison_rows(results: StudyResults, pairs: Sequence[Sequence[str]]) -> list[list[str]]:
    rows = []
    for candidate, reference in pairs:
        c = results.compare(candidate, reference)
        name = f"{candidate} vs {reference}"
        rows += [[name, str(s), _pct(p.candidate_rate), _pct(p.reference_rate), _diff(p)]
                 for s, p in c.per_seed.items()]  # fmt: skip
        rows.append([name, "over run seeds", "", "", _over_seeds(c.seeds)])
    return rows


def section_body(
    study: StudyConfig, runs: Sequence[PlannedRun], results: StudyResults, command: str, plot: str
) -> str:
    final = results.final
    lines = _header(study, runs, results, command)
    lines += ["", "### Success per round", "", f"![success per round]({plot})", ""]
    header = ("variant", "round", "success (mean)", "per run seed (Wilson 95%)", "succ/robot-h", "interv rate",
              "interv/succ", "promoted", "wall min")  # fmt: skip
    lines += _table(header, _round_rows(results))
    lines.append(
        "\nSuccess: the round's evaluation on the fixed seeds; succ/robot-h: evaluation successes per robot-hour; "
        "interv rate: the share of the round's collected steps a corrector took over (round 0 records "
        "demonstrations); interv/succ: those corrected steps per successful collected episode; promoted: run "
        "seeds whose gate deployed the round's policy; means over run seeds.\n"
    )
    if final > 0:
        lines += [f"### Round {final} against round 0, per run seed (paired on the evaluation seeds)", ""]
        rows = [
            [v, str(s), _pct(g.reference_rate), _pct(g.candidate_rate), _diff(g)]
            for v in results.variants
            for s, g in ((s, results.gain(v, s)) for s in results.seeds)
        ]
        header = ("variant", "run seed", "round 0", f"round {final}", "difference [95%], McNemar p")
        lines += [*_table(header, rows), ""]
    pairs = [pair for pair in study.comparisons if all(v in results.variants for v in pair)]
    if pairs:
        lines += [f"### Variants at round {final}", ""]
        header = ("comparison", "run seed", "candidate", "reference", "difference [95%], p")
        lines += _table(header, _comparison_rows(results, pairs))
        lines.append(
            "\nPer run seed: paired on the evaluation seeds (Agresti-Min interval, exact McNemar p); over run "
            "seeds: the mean of the per-seed differences with a t interval and a one-sample t test.\n"
        )
    lines += ["### Goals", ""]
    for i, goal in enumerate(goals(results), 1):
        verdict = {True: "**met**", False: "**not met**", None: "not evaluated"}[goal.met]
        lines.append(f"{i}. {goal.text}: {verdict} ({goal.detail}).")
    return "\n".join(lines)


# -- plot -----------------------------------------------------------------------------------------------------------
def plot_success(results: StudyResults, path: Path) -> None:
    """Success per round and variant: each run seed's rate with its Wilson interval, and the mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rounds = np.arange(results.final + 1)
    width = 0.6 / max(1, len(results.variants))
    for i, variant in enumerate(results.variants):
        x = rounds + (i - (len(results.variants) - 1) / 2) * width
        means = [np.mean([r.rate for r in results.rounds(variant, k)]) for k in rounds]
        (line,) = ax.plot(x, means, marker="o", label=variant)
        for j, seed in enumerate(results.seeds):
            per_seed = results.runs[variant, seed].rounds
            rates = np.array([r.rate for r in per_seed])
            low, high = np.array([r.interval for r in per_seed]).T
            jitter = x + (j - (len(results.seeds) - 1) / 2) * width / (len(results.seeds) + 1)
            ax.errorbar(jitter, rates, yerr=[rates - low, high - rates], fmt=".", color=line.get_color(),
                        alpha=0.35, capsize=2)  # fmt: skip
    ax.set(xlabel="round", ylabel="evaluation success", ylim=(-0.02, 1.02), xticks=rounds)
    ax.set_title("Success per round: mean over run seeds (line), each run seed with its Wilson 95% interval")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- RESULTS.md -------------------------------------------------------------------------------------------------
def write_section_first(path: Path, name: str, body: str, source: str = "") -> None:
    """Replace section ``name`` of ``path`` in place, or insert it before every other section: the file's header
    paragraph stays first and current results come right after it (the markers are those of
    scripts/results_sections.py)."""
    start = f"<!-- section: {name}{f' ({source})' if source else ''} -->"
    end = f"<!-- end section: {name} -->"
    section = f"{start}\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# vivarl results\n\n"
    own = re.search(
        rf"<!-- section: {re.escape(name)}(?: \([^)]*\))? -->.*?{re.escape(end)}\n?", text, re.DOTALL
    )
    first = re.search(r"^<!-- section: ", text, re.MULTILINE)
    if own:
        text = text[: own.start()] + section + text[own.end() :]
    elif first:
        text = text[: first.start()] + section + "\n" + text[first.start() :]
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def write_report(study: StudyConfig, runs: Sequence[PlannedRun], command: str) -> Path:
    """The plot (in the study dir, and a copy at ``study.plot``) and the RESULTS.md section; returns the file."""
    results = load_study(study, runs)
    plot = Path(study.dir) / PLOT_FILE
    plot_success(results, plot)
    if study.plot:
        Path(study.plot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plot, study.plot)
        plot = Path(study.plot)
    results_md = Path(study.results_md)
    reference = os.path.relpath(plot.resolve(), results_md.resolve().parent)
    write_section_first(
        results_md, study.section, section_body(study, runs, results, command, reference), SOURCE
    )
    return results_md
