"""The study command: the runs it plans and resumes, and the report it regenerates from hand-made run states."""

from __future__ import annotations

import io
import json
import math
import sys
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from rich.console import Console
from scipy import stats

from improve.config import LoopConfig
from improve.run_state import STAGES, RunState
from improve.study import (
    StudyConfig,
    compose_loop,
    plan_runs,
    register_study_configs,
    run_overrides,
    run_study,
    stream_to_log,
    to_study,
)
from improve.study_report import (
    RECORD_FILE,
    StudyError,
    elapsed_seconds,
    goals,
    load_study,
    over_seeds,
    write_report,
    write_section_first,
)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
BASE = 1000
EPISODES = 20
OVERRIDES = {"a": [], "b": ["valuemodel=static"], "c": ["policy_learner.extraction=bc"]}


def make_study(tmp_path: Path, **changes) -> StudyConfig:
    fields = {
        "dir": str(tmp_path / "study"),
        "run_seeds": [0, 1, 2],
        "variants": ["recap_viva", "recap_static", "bc_corrections"],
        "variant_overrides": {
            "recap_viva": [],
            "recap_static": ["valuemodel=static"],
            "bc_corrections": ["policy_learner.extraction=bc"],
            "no_retrain": ["loop.retrain_policy=false"],
        },
        "comparisons": [["recap_viva", "recap_static"], ["recap_viva", "bc_corrections"]],
        "eval_seed_base": BASE,
        "overrides": ["loop.rounds=2"],
        "results_md": str(tmp_path / "RESULTS.md"),
        "plot": str(tmp_path / "results" / "study.png"),
        "echo": True,
    }
    study = StudyConfig(**{**fields, **changes})
    study.validate()
    return study


def loop_of(overrides) -> LoopConfig:
    return LoopConfig(rounds=2, demo_episodes=30, episodes_per_round=10, eval_episodes=EPISODES)


def outcomes(successes: int, base: int = BASE) -> dict[str, int]:
    return {str(base + i): int(i < successes) for i in range(EPISODES)}


def write_state(run_dir: Path, successes, per_hour=None, interventions=None, stop=None, base=BASE) -> None:
    """A run_state.json as the driver leaves it: ``successes[r]`` of the fixed seeds solved in round r; ``stop``:
    the (round, stage) it stopped before."""
    state = RunState(run_name=run_dir.name, config_fingerprint="test")
    for r, k in enumerate(successes):
        for stage in STAGES:
            if stop and (r, STAGES.index(stage)) >= (stop[0], STAGES.index(stop[1])):
                break
            state.mark_done(r, stage, 30.0)
        solved = outcomes(k, base) if isinstance(k, int) else k
        state.round_outputs(r).update(
            eval_outcomes=solved,
            metrics={
                "eval/success_rate": sum(solved.values()) / EPISODES,
                "eval/successes_per_hour": (per_hour or [10.0 * sum(solved.values())] * len(successes))[r],
                "collect/intervention_rate": (interventions or [0.0, 0.4, 0.3])[r],
            },
            deployed=f"v{r:06d}",
            gate={"promoted": True, "candidate": f"v{r:06d}", "incumbent": None},
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    state.save(run_dir)


# Final-round successes per run seed; round 0 is 5/20 everywhere.
GOOD = {"recap_viva": [15, 15, 16], "recap_static": [9, 10, 11], "bc_corrections": [12, 13, 13]}


def write_study(study: StudyConfig, finals=GOOD) -> list:
    runs = plan_runs(study, loop_of)
    for run in runs:
        final = finals[run.variant][run.seed]
        write_state(run.run_dir, [5, (5 + final) // 2, final])
    return runs


# -- the runs a study makes -----------------------------------------------------------------------------------
def test_each_run_gets_its_folder_seeds_then_the_variants_overrides_then_the_studys(tmp_path):
    study = make_study(tmp_path, run_seeds=[0, 1], overrides=["loop.rounds=1", "valuemodel=tiny"])
    runs = plan_runs(study, loop_of)
    assert [(r.seed, r.variant) for r in runs] == [
        (0, "recap_viva"), (0, "recap_static"), (0, "bc_corrections"),
        (1, "recap_viva"), (1, "recap_static"), (1, "bc_corrections"),
    ]  # fmt: skip
    static = runs[4]
    run_dir = Path(study.dir).resolve() / "recap_static" / "seed1"
    assert static.run_dir == run_dir and static.log == run_dir / "study.log"
    assert static.command() == [
        sys.executable, "-m", "improve.cli", f"run_dir={run_dir}", "loop.seed=1", f"loop.eval_seed_base={BASE}",
        "valuemodel=static", "loop.rounds=1", "valuemodel=tiny",
    ]  # fmt: skip


def compose_study(*overrides: str) -> StudyConfig:
    register_study_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return to_study(compose(config_name="study", overrides=list(overrides)))


def test_study_yaml_defaults_and_overridable_eval_seed_base():
    study = compose_study()
    assert study.variants == ["recap_viva", "recap_static", "recap_progress", "bc_corrections", "no_retrain"]
    assert study.variant_overrides["recap_viva_cfg"] == ["policy_learner.policy.cfg_beta=1.5"]
    assert study.eval_seed_base == 1_000_000_000 and study.run_seeds == [0, 1, 2]
    study = compose_study("study.eval_seed_base=7", '+study.variant_overrides.mine=["labelling.horizon=10"]',
                          "study.variants=[mine]", 'study.overrides=["loop.rounds=1"]')  # fmt: skip
    assert run_overrides(study, "mine", 4)[1:] == [
        "loop.seed=4", "loop.eval_seed_base=7", "labelling.horizon=10", "loop.rounds=1"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "study.variants=[recap_viva,recap_vivaa]",
            "unknown variant(s) recap_vivaa in study.variants; known:",
        ),
        ("study.variants=[recap_viva,recap_viva]", "study.variants lists recap_viva more than once"),
        (
            "study.run_seeds=[]",
            "study.run_seeds is empty: give the loop seeds to run, e.g. study.run_seeds=[0,1,2]",
        ),
        ('study.overrides=["loop.seed=3"]', "study.overrides sets loop.seed, which the study sets"),
        ("study.comparisons=[[recap_viva,nope]]", "is not a [candidate, reference] pair"),
        ("study.parallel_runs=0", "study.parallel_runs is 0: give how many runs go at once, at least 1"),
    ],
)
def test_a_bad_study_config_names_the_fix(override, message):
    with pytest.raises(ValueError) as err:
        compose_study(override)
    assert message in str(err.value)


def test_the_default_variants_compose_as_main_command_runs(tmp_path):
    """The overrides in configs/study.yaml must all be keys the main command knows (loop.eval_seed_base and
    loop.retrain_policy included)."""
    study = compose_study(f"study.dir={tmp_path}", "study.variants=[recap_viva,recap_static,recap_progress,"
                          "bc_corrections,no_retrain,recap_viva_cfg,recap_viva_continual]")  # fmt: skip
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        runs = plan_runs(study, compose_loop)
    assert len(runs) == 21 and all(run.loop.rounds >= 1 for run in runs)


def fake_runner(calls: list, returncode: int = 0, finish: bool = True, before=lambda: None):
    def runner(command, log, echo):
        before()
        calls.append(list(command))
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("running\n")
        echo("round 0 collect ...")
        run_dir = Path(next(a for a in command if a.startswith("run_dir=")).split("=", 1)[1])
        write_state(run_dir, [5, 10, 15], stop=None if finish else (1, "deploy"))
        return returncode

    return runner


def test_rerunning_skips_finished_runs_and_resumes_unfinished_ones(tmp_path):
    study = make_study(tmp_path, run_seeds=[0, 1], variants=["recap_viva", "recap_static"])
    runs = plan_runs(study, loop_of)
    write_state(runs[0].run_dir, [5, 10, 15])  # finished
    write_state(runs[1].run_dir, [5, 10, 15], stop=(2, "evaluate"))  # stopped before round 2's evaluation
    calls, out = [], io.StringIO()
    run_study(study, runs, fake_runner(calls), Console(file=out, width=200))
    assert [c[3] for c in calls] == [f"run_dir={r.run_dir}" for r in runs[1:]]
    assert "4 runs, 1 finished, 3 to run" in out.getvalue()
    assert "[recap_static/seed0] round 0 collect ..." in out.getvalue()
    record = json.loads((runs[1].run_dir / RECORD_FILE).read_text())
    assert record["loop"]["rounds"] == 2 and [a["returncode"] for a in record["attempts"]] == [0]
    calls.clear()
    run_study(study, runs, fake_runner(calls), Console(file=io.StringIO()))
    assert calls == []


def test_a_failing_run_stops_the_study_naming_its_folder_and_log(tmp_path):
    study = make_study(tmp_path, run_seeds=[0, 1])
    runs = plan_runs(study, loop_of)
    calls = []
    with pytest.raises(StudyError) as err:
        run_study(study, runs, fake_runner(calls, returncode=1), Console(file=io.StringIO()))
    assert len(calls) == 1
    assert f"run {runs[0].run_dir} failed (exit status 1); its output is in {runs[0].log}" in str(err.value)
    with pytest.raises(
        StudyError, match="exited cleanly but its run_state.json does not show rounds 0-2 finished"
    ):
        run_study(study, runs, fake_runner(calls, finish=False), Console(file=io.StringIO()))


def test_parallel_runs_overlap_and_a_failure_starts_no_new_run(tmp_path):
    study = make_study(tmp_path, run_seeds=[0, 1], variants=["recap_viva", "recap_static"], parallel_runs=2)
    runs = plan_runs(study, loop_of)
    both_running = threading.Barrier(2, timeout=30)  # broken (an error) unless two runs are under way at once
    calls: list = []
    run_study(study, runs, fake_runner(calls, before=both_running.wait), Console(file=io.StringIO()))
    assert sorted(c[3] for c in calls) == sorted(f"run_dir={r.run_dir}" for r in runs)
    records = [json.loads((r.run_dir / RECORD_FILE).read_text()) for r in runs]
    assert {a["parallel_runs"] for rec in records for a in rec["attempts"]} == {2}

    study = make_study(
        tmp_path / "again", run_seeds=[0, 1], variants=["recap_viva", "recap_static"], parallel_runs=2
    )
    runs = plan_runs(study, loop_of)
    first_failed = threading.Event()

    def failing_first(command, log, echo):
        if command[3] == f"run_dir={runs[0].run_dir}":
            first_failed.set()
            return 1
        assert first_failed.wait(30)
        return fake_runner(calls)(command, log, echo)

    calls.clear()
    with pytest.raises(StudyError, match=f"run {runs[0].run_dir} failed"):
        run_study(study, runs, failing_first, Console(file=io.StringIO()))
    assert [c[3] for c in calls] == [f"run_dir={runs[1].run_dir}"]  # it finished; runs 2 and 3 never started
    assert runs[1].finished() and not runs[2].run_dir.exists()


def test_elapsed_time_counts_overlapping_runs_once():
    assert elapsed_seconds([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert elapsed_seconds([]) == 0


def test_stream_to_log_tees_every_line_and_returns_the_exit_status(tmp_path):
    lines = []
    log = tmp_path / "run" / "study.log"
    code = stream_to_log(
        [sys.executable, "-c", "import sys; print('one'); sys.exit('two')"], log, lines.append
    )
    assert code == 1 and lines == ["one", "two"]
    assert log.read_text().splitlines()[-2:] == ["one", "two"]


# -- what the report says -----------------------------------------------------------------------------------------
def test_the_report_pairs_rounds_and_variants_and_meets_the_goals(tmp_path):
    study = make_study(tmp_path)
    runs = write_study(study)
    (tmp_path / "RESULTS.md").write_text("# vivarl results\n\nHeader paragraph.\n")
    write_report(study, runs, "vivarl-study 'study.overrides=[\"loop.rounds=2\"]'")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "vivarl-study 'study.overrides=[\"loop.rounds=2\"]'" in text
    assert "Run seeds: 0, 1, 2. Evaluation seeds: 20 seeds, 1000 to 1019 (base 1000)" in text
    assert "| recap_static | `valuemodel=static` | 2 | 30 | 10 | 20 |" in text
    # recap_viva seed 2, round 2: 16/20 with its Wilson interval.
    cis = {k: stats.binomtest(k, 20).proportion_ci(method="wilson") for k in (15, 16)}
    per_seed = ", ".join(f"{k / 20:.0%} [{cis[k].low:.0%}, {cis[k].high:.0%}]" for k in (15, 15, 16))
    assert f"| recap_viva | 2 | 77% | {per_seed} |" in text
    assert "| recap_viva | 1 | 25% | 75% | +50 points [" in text  # round 0 -> 2 of run seed 1
    # recap_viva vs recap_static at the final round: +6, +5, +5 of 20 -> mean +27 points over 3 run seeds.
    diffs = [0.30, 0.25, 0.25]
    t_low, t_high = stats.t.interval(0.95, 2, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    assert f"+27 points over 3 run seeds, t 95% [{100 * t_low:+.0f}, {100 * t_high:+.0f}]" in text
    assert text.count("**met**") == 4 and "not met" not in text
    assert "![success per round](results/study.png)" in text
    png = (tmp_path / "results" / "study.png").read_bytes()
    assert png.startswith(b"\x89PNG") and 5_000 < len(png) < 200_000
    assert (Path(study.dir) / "success_per_round.png").is_file()


def test_goals_that_are_not_met_say_so_without_dropping_a_seed(tmp_path):
    study = make_study(tmp_path)
    # Run seed 1 of recap_viva gains only 3 of 20 and falls below recap_static there.
    finals = {**GOOD, "recap_viva": [15, 8, 16]}
    runs = write_study(study, finals)
    results = load_study(study, runs)
    gain, throughput, baselines, interventions = goals(results)
    assert gain.met is False and "seed 1: +15 points" in gain.detail
    assert throughput.met is True  # 50 -> about 130 successes per hour on average
    assert baselines.met is True and "vs recap_static: +15 points" in baselines.detail
    assert interventions.met is True
    for run in runs:  # the intervention rate rises in every run
        write_state(run.run_dir, [5, 10, finals[run.variant][run.seed]], interventions=[0.0, 0.3, 0.35])
    assert goals(load_study(study, runs))[3].met is False


def test_goals_on_a_study_without_the_baselines_are_not_evaluated(tmp_path):
    study = make_study(tmp_path, variants=["recap_viva"], run_seeds=[0])
    runs = write_study(study)
    goal = goals(load_study(study, runs))
    assert [g.met for g in goal] == [True, True, None, True]
    assert goal[2].detail == "recap_static, bc_corrections not in this study"


def test_a_gain_of_25_points_whose_paired_interval_reaches_zero_does_not_meet_the_first_goal(tmp_path):
    study = make_study(tmp_path, variants=["recap_viva"], run_seeds=[0])
    (run,) = plan_runs(study, loop_of)
    # Round 0 solves seeds 0-4, round 2 seeds 3-12: +25 points, but 3 seeds are lost on the way.
    final = {str(BASE + i): int(3 <= i <= 12) for i in range(EPISODES)}
    write_state(run.run_dir, [5, 8, final])
    gain = goals(load_study(study, [run]))[0]
    assert gain.met is False and gain.detail.startswith("seed 0: +25 points [-7, ")


def test_the_intervention_goal_needs_a_fall_at_every_round(tmp_path):
    study = make_study(tmp_path, variants=["recap_viva"], run_seeds=[0])
    (run,) = plan_runs(study, lambda overrides: LoopConfig(rounds=3, eval_episodes=EPISODES))
    write_state(run.run_dir, [5, 8, 12, 15], interventions=[0.0, 0.4, 0.3, 0.35])
    goal = goals(load_study(study, [run]))[3]
    assert goal.met is False and goal.detail.endswith("rounds 1-3: 40%, 30%, 35%")
    write_state(run.run_dir, [5, 8, 12, 15], interventions=[0.0, 0.4, 0.3, 0.2])
    assert goals(load_study(study, [run]))[3].met is True


def test_a_missing_or_unfinished_run_is_an_error_not_a_smaller_study(tmp_path):
    study = make_study(tmp_path)
    runs = write_study(study)
    missing = runs[4].run_dir / "run_state.json"
    missing.unlink()
    write_state(runs[5].run_dir, [5, 10, 15], stop=(2, "deploy"))
    with pytest.raises(StudyError) as err:
        write_report(study, runs, "vivarl-study")
    assert f"{runs[4].run_dir} has no run_state.json" in str(err.value)
    assert f"{runs[5].run_dir}: rounds [2] not finished" in str(err.value)
    assert not (tmp_path / "RESULTS.md").exists()


def test_runs_evaluated_on_other_seeds_are_refused(tmp_path):
    study = make_study(tmp_path)
    runs = write_study(study)
    write_state(runs[0].run_dir, [5, 10, 15], base=BASE + 1)
    with pytest.raises(StudyError, match="round 0 was evaluated on 20 seeds, not the study's 20 from 1000"):
        load_study(study, runs)


def test_over_seeds_is_a_t_interval_over_run_seeds():
    s = over_seeds([0.1, 0.3, 0.2])
    low, high = stats.t.interval(0.95, 2, loc=0.2, scale=stats.sem([0.1, 0.3, 0.2]))
    assert (s.n, s.low, s.high) == (3, pytest.approx(low), pytest.approx(high))
    assert s.mean == pytest.approx(0.2) and s.p_value == pytest.approx(
        stats.ttest_1samp([0.1, 0.3, 0.2], 0).pvalue
    )
    assert math.isnan(over_seeds([0.2]).low) and over_seeds([0.2, 0.2]).low == pytest.approx(0.2)


def test_the_section_goes_first_after_the_header_and_is_then_replaced_in_place(tmp_path):
    results = tmp_path / "RESULTS.md"
    header = "# vivarl results\n\nWhere things stand.\n\n"
    older = "<!-- section: old (scripts/old.py) -->\nold\n<!-- end section: old -->\n"
    results.write_text(header + older)
    write_section_first(results, "study", "## Study\n\nfirst", source="vivarl-study")
    ours = "<!-- section: study (vivarl-study) -->\n## Study\n\n{}\n<!-- end section: study -->\n"
    assert results.read_text() == header + ours.format("first") + "\n" + older
    write_section_first(results, "study", "## Study\n\nsecond", source="vivarl-study")
    assert results.read_text() == header + ours.format("second") + "\n" + older
    empty = tmp_path / "NEW.md"
    write_section_first(empty, "study", "body")
    assert (
        empty.read_text()
        == "# vivarl results\n\n<!-- section: study -->\nbody\n<!-- end section: study -->\n"
    )


def test_interventions_per_success_counts_corrected_steps_per_successful_collected_episode():
    from improve.study_report import RoundResult

    metrics = {
        "collect/episodes": 10.0, "collect/mean_length": 200.0, "collect/intervention_rate": 0.25,
        "collect/success_rate": 0.5, "collect/unlabelled": 0.0,
    }  # fmt: skip
    assert RoundResult({}, metrics, 0.0, None).interventions_per_success == 0.25 * 2000 / 5
    none_succeeded = RoundResult({}, {**metrics, "collect/success_rate": 0.0}, 0.0, None)
    assert math.isnan(none_succeeded.interventions_per_success)
