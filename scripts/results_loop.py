"""The main command's result: a finished run's round table and stage times as the ``main-command`` section.

    .venv/bin/python scripts/results_loop.py --run-dir runs/<run> [--command "bash scripts/run.sh"]

Reads ``run_state.json`` only, so it regenerates the section of any finished run without running anything.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from results_sections import write_section  # scripts/ is on sys.path when a script runs
from rich.console import Console

from improve.report import round_table, stage_table
from improve.run_state import RunState


def render(state: RunState) -> str:
    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with console
    console.print(round_table(state))
    console.print(stage_table(state))
    return console.export_text()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--command", default="bash scripts/run.sh", help="how the run was started")
    parser.add_argument("--commit", default="", help="the commit the run was made at")
    parser.add_argument("--notes", default="", help="a reading of the run, added under the tables")
    parser.add_argument("--results", type=Path, default=Path("RESULTS.md"))
    args = parser.parse_args()
    state = RunState.load(args.run_dir)
    if state is None or not state.rounds_completed():
        raise SystemExit(f"{args.run_dir} has no finished round: give the run_dir of a vivarl run")
    seconds = sum(sum(stages.values()) for stages in state.stage_seconds.values())
    day = time.strftime("%Y-%m-%d", time.localtime(state.started_at))
    commit = f" at commit {args.commit}" if args.commit else ""
    body = f"""## The main command (main-command)

`{args.command}` on a fresh clone{commit}, {day}, {os.cpu_count()} CPU cores, no GPU: {state.rounds_completed()}
rounds in {seconds / 60:.1f} min of stage time. Regenerate this section from the run with
`.venv/bin/python scripts/results_loop.py --run-dir <run_dir>`.

```
{render(state).rstrip()}
```
{args.notes}
"""
    write_section(args.results, "main-command", body, source="scripts/results_loop.py")
    print(body)


if __name__ == "__main__":
    main()
