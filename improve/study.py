"""The `vivarl-study` command: the whole improvement loop for several run seeds and variants, on the same
evaluation seeds, then one generated RESULTS.md section and a plot.

vivarl-study [overrides]                  run every (variant, run seed) not finished yet, then write the report
vivarl-study study.report_only=true       regenerate the section and the plot from the runs' run_state.json
vivarl-study 'study.overrides=["loop.rounds=1","loop.demo_episodes=6"]' study.run_seeds=[0]   a small study

Each (variant, run seed) is one run of the main command in a subprocess, ``study.parallel_runs`` at a time, in
``<study.dir>/<variant>/seed<k>``; its output goes to ``study.log`` there. Running the same command again resumes:
a finished run (every stage of every round done) is skipped and an unfinished one resumes where it stopped, as `vivarl`
with the same run_dir does.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from improve.config import LoopConfig, register_configs, to_dataclass
from improve.run_state import RunStateError
from improve.study_report import RECORD_FILE, StudyError, is_finished, write_report

logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)

LOG_FILE = "study.log"
# What the study sets for every run itself; a variant or study-wide override must not (``store_url`` too: runs
# sharing a replay store would train on each other's episodes).
RESERVED_KEYS = ("run_dir", "store_url", "loop.seed", "loop.eval_seed_base", "hydra.run.dir")


@dataclass
class StudyConfig:
    """Which runs of the main command a study makes, and where it reports them."""

    # Every run lives in <dir>/<variant>/seed<k>; re-running the same command resumes there.
    dir: str = "runs/study"
    # The loop seeds (loop.seed) each variant runs with.
    run_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # The variants to run, by name in ``variant_overrides`` (configs/study.yaml lists the defaults).
    variants: list[str] = field(default_factory=list)
    # Variant name -> the main command's Hydra overrides that make it; add one with
    # '+study.variant_overrides.<name>=["key=value"]' or in configs/study.yaml.
    variant_overrides: dict[str, list[str]] = field(default_factory=dict)
    # [candidate, reference] pairs compared at the final round; a pair with a variant not run is left out.
    comparisons: list[list[str]] = field(default_factory=list)
    # Base of the fixed evaluation seeds (loop.eval_seed_base), the same for every run of the study.
    eval_seed_base: int = 1_000_000_000
    # Extra overrides for every run, after the variant's (so they win), e.g. '["loop.rounds=1"]'.
    overrides: list[str] = field(default_factory=list)
    # The file and section the report is written to (replaced in place, or inserted as the first section).
    results_md: str = "RESULTS.md"
    section: str = "improvement-loop-study"
    # A copy of the success plot for the section to show (the study dir keeps the original); empty: none.
    plot: str = "results/improvement-loop-study.png"
    # Only regenerate the section and the plot from the runs' state; run nothing.
    report_only: bool = False
    # Show each run's output on the console as well as in its study.log.
    echo: bool = True
    # How many runs go at once. A run of the main command keeps about one core busy most of the time (its arms,
    # learners and driver mostly take turns), so 2 on a 2-core machine shorten the study (by how much was not
    # measured on an idle machine; Ray already runs each actor with OMP_NUM_THREADS set to its 1 CPU). Runs never
    # share a folder, a store or a seed, so their results do not depend on it.
    parallel_runs: int = 1

    def validate(self) -> None:
        """Refuse what would make a study that cannot be run or compared (``to_study`` calls it)."""
        if self.parallel_runs < 1:
            raise ValueError(
                f"study.parallel_runs is {self.parallel_runs}: give how many runs go at once, at least 1"
            )
        if not self.run_seeds:
            raise ValueError(
                "study.run_seeds is empty: give the loop seeds to run, e.g. study.run_seeds=[0,1,2]"
            )
        if not self.variants:
            raise ValueError(
                "study.variants is empty: name variants to run, e.g. study.variants=[recap_viva]"
            )
        for name, values in (("study.run_seeds", self.run_seeds), ("study.variants", self.variants)):
            repeated = sorted(str(v) for v, count in Counter(values).items() if count > 1)
            if repeated:
                raise ValueError(f"{name} lists {', '.join(repeated)} more than once")
        unknown = [v for v in self.variants if v not in self.variant_overrides]
        if unknown:
            raise ValueError(
                f"unknown variant(s) {', '.join(unknown)} in study.variants; known: "
                f"{', '.join(sorted(self.variant_overrides))}. Define one with "
                "'+study.variant_overrides.<name>=[\"key=value\"]' or in configs/study.yaml"
            )
        for pair in self.comparisons:
            if len(pair) != 2 or any(v not in self.variant_overrides for v in pair):
                raise ValueError(
                    f"study.comparisons entry {list(pair)} is not a [candidate, reference] pair of variants "
                    f"from study.variant_overrides ({', '.join(sorted(self.variant_overrides))})"
                )
        sources = {f"study.variant_overrides.{v}": self.variant_overrides[v] for v in self.variants}
        for where, overrides in {**sources, "study.overrides": self.overrides}.items():
            for override in overrides:
                if override_key(override) in RESERVED_KEYS:
                    raise ValueError(
                        f"{where} sets {override_key(override)}, which the study sets for every run itself "
                        "(from study.dir, study.run_seeds and study.eval_seed_base)"
                    )


@dataclass
class StudyCommandConfig:
    study: StudyConfig = field(default_factory=StudyConfig)


def register_study_configs() -> None:
    """The study's schema (``configs/study.yaml`` lists ``study_schema`` first) and the main command's."""
    register_configs()
    ConfigStore.instance().store(name="study_schema", node=StudyCommandConfig)


def override_key(override: str) -> str:
    """The config key a Hydra override sets: ``+loop.seed=3`` -> ``loop.seed``."""
    return override.split("=", 1)[0].lstrip("+~")


@dataclass(frozen=True)
class PlannedRun:
    """One (variant, run seed) of a study: a run of the main command with these overrides."""

    variant: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]
    # The run's loop settings as the main command composes them (rounds and sizes).
    loop: LoopConfig

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_FILE

    def command(self) -> list[str]:
        return [sys.executable, "-m", "improve.cli", *self.overrides]

    def finished(self) -> bool:
        return is_finished(self.run_dir, self.loop.rounds)


def run_overrides(study: StudyConfig, variant: str, seed: int) -> list[str]:
    """The main command's overrides for one run: where and with which seeds, then the variant's, then the study's."""
    run_dir = Path(study.dir).resolve() / variant / f"seed{seed}"
    return [
        f"run_dir={run_dir}",
        f"loop.seed={seed}",
        f"loop.eval_seed_base={study.eval_seed_base}",
        *study.variant_overrides[variant],
        *study.overrides,
    ]


def compose_loop(overrides: Sequence[str]) -> LoopConfig:
    """The loop settings the main command would run with (inside a Hydra app: same config search path)."""
    from hydra import compose

    try:
        return to_dataclass(compose(config_name="config", overrides=list(overrides))).loop
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise StudyError(f"the main command refuses the overrides {list(overrides)}: {err}") from None


def plan_runs(
    study: StudyConfig, loop_of: Callable[[Sequence[str]], LoopConfig] = compose_loop
) -> list[PlannedRun]:
    """Every run of the study, run seed by run seed (each seed's variants can be compared as soon as it ends)."""
    runs = []
    for seed in study.run_seeds:
        for variant in study.variants:
            overrides = run_overrides(study, variant, seed)
            run_dir = Path(overrides[0].split("=", 1)[1])
            runs.append(PlannedRun(variant, seed, run_dir, tuple(overrides), loop_of(overrides)))
    return runs


# command, log file, a callback for each output line -> exit status
Runner = Callable[[Sequence[str], Path, Callable[[str], None]], int]


def stream_to_log(command: Sequence[str], log: Path, echo: Callable[[str], None]) -> int:
    """Run ``command``, appending its output (stdout and stderr) to ``log`` line by line and echoing each line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
        with subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                echo(line.rstrip("\n"))
            return proc.wait()


def record_attempt(run: PlannedRun, started: float, returncode: int, parallel_runs: int = 1) -> None:
    """Add this attempt (wall time, exit status, cores, runs at once) to the run's study_run.json, which the report
    reads."""
    path = run.run_dir / RECORD_FILE
    record = json.loads(path.read_text()) if path.exists() else {"attempts": []}
    record.update(variant=run.variant, seed=run.seed, overrides=list(run.overrides), loop=asdict(run.loop))
    attempt = {"started_at": started, "wall_s": time.time() - started, "returncode": returncode}
    record["attempts"].append({**attempt, "cpu_count": os.cpu_count(), "parallel_runs": parallel_runs})
    run.run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


def check_finished(run: PlannedRun, returncode: int) -> None:
    """A StudyError naming the run's folder and log unless it exited cleanly with every round done."""
    if returncode != 0:
        raise StudyError(
            f"run {run.run_dir} failed (exit status {returncode}); its output is in {run.log}. Fix the "
            "cause and run the same command again: finished runs are kept and this one resumes"
        )
    if not run.finished():
        raise StudyError(
            f"run {run.run_dir} exited cleanly but its run_state.json does not show rounds "
            f"0-{run.loop.rounds} finished (did loop.budget_hours stop it?); its output is in {run.log}"
        )


def run_study(
    study: StudyConfig,
    runs: Sequence[PlannedRun],
    runner: Runner = stream_to_log,
    console: Console | None = None,
) -> None:
    """Run every unfinished run, ``study.parallel_runs`` at a time, in plan order. After the first failure no new
    run starts; the ones under way finish (their work is kept), then the failure is raised, naming its folder and
    log."""
    console = console or Console()
    todo = [run for run in runs if not run.finished()]
    console.print(
        f"study {study.dir}: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to run, "
        f"{study.parallel_runs} at a time"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    running: set[str] = set()
    lock = threading.Lock()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("study", total=len(runs), completed=len(runs) - len(todo))

        def attempt(run: PlannedRun) -> None:
            name = f"{run.variant}/seed{run.seed}"
            with lock:
                running.add(name)
                progress.update(task, description=f"study: {', '.join(sorted(running))}")
                progress.console.print(f"[bold]{name}[/]: {shlex.join(run.command())}  (log: {run.log})")

            def echo(line: str) -> None:
                if study.echo:
                    progress.console.print(Text(f"[{name}] {line}", style="dim"))

            started = time.time()
            try:
                returncode = runner(run.command(), run.log, echo)
                record_attempt(run, started, returncode, study.parallel_runs)
                check_finished(run, returncode)
                progress.advance(task)
            finally:
                with lock:
                    running.discard(name)

        failures: list[BaseException] = []
        queue = list(todo)
        with ThreadPoolExecutor(max_workers=study.parallel_runs) as pool:
            under_way: set[Future] = set()
            while queue or under_way:
                while queue and not failures and len(under_way) < study.parallel_runs:
                    under_way.add(pool.submit(attempt, queue.pop(0)))
                if not under_way:
                    break
                done, under_way = wait(under_way, return_when=FIRST_COMPLETED)
                failures += [f.exception() for f in done if f.exception() is not None]  # type: ignore[misc]
        if failures:
            raise failures[0]


def study_command() -> str:
    """The command as it was typed, without ``study.report_only`` (the same command makes the same runs)."""
    overrides = [o for o in HydraConfig.get().overrides.task if override_key(o) != "study.report_only"]
    return shlex.join(["vivarl-study", *overrides])


def to_study(cfg: DictConfig) -> StudyConfig:
    """Resolve the composed config and validate it (the defaults come from configs/study.yaml, not the schema)."""
    study: StudyConfig = OmegaConf.to_object(cfg).study  # type: ignore[union-attr]
    study.validate()
    return study


register_study_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="study")
def main(cfg: DictConfig) -> None:
    try:
        study = to_study(cfg)
    except ValueError as err:
        raise SystemExit(f"vivarl-study: bad config: {err}") from None
    try:
        runs = plan_runs(study)
        if not study.report_only:
            run_study(study, runs)
        path = write_report(study, runs, study_command())
    except (StudyError, RunStateError) as err:
        raise SystemExit(f"vivarl-study: {err}") from None
    Console().print(f"study report: section {study.section!r} of {path}")


if __name__ == "__main__":
    main()
