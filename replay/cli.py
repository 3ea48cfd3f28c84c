"""vivarl-replay: inspect, verify, export and import replay stores from the shell.

    vivarl-replay inspect STORE [--episodes N]
    vivarl-replay verify STORE [--no-data] [--quarantine] [--stale-after S]
    vivarl-replay export STORE OUT [--repo-id ID] [--round R ...] [--outcome O ...] [--task T ...] [--videos]
    vivarl-replay import LEROBOT_ROOT STORE [--repo-id ID] [--round 0] [--outcome success]

Exit status: 0 on success, 1 when verify finds damage or torn episodes, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from replay.sampler import EpisodeFilter
from replay.schema import Outcome, ReplayError
from replay.store import DEFAULT_STALE_AFTER_S, ReplayStore


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _options(args: argparse.Namespace) -> dict | None:
    return json.loads(args.storage_options) if args.storage_options else None


def cmd_inspect(args: argparse.Namespace, console: Console) -> int:
    store = ReplayStore.open(args.store, storage_options=_options(args))
    records = store.records()
    per_round: dict[int, list] = defaultdict(list)
    for r in records.values():
        per_round[r.meta.round].append(r.meta)
    summary = Table(title=f"{store.location.url}  ({_size(store.size_bytes())} on disk)")
    for col in (
        "round",
        "episodes",
        "steps",
        "success",
        "failure",
        "unlabelled",
        "success rate",
        "interventions",
    ):
        summary.add_column(col, justify="right")
    for rnd in sorted(per_round):
        metas = per_round[rnd]
        counts = {o: sum(m.outcome is o for m in metas) for o in Outcome}
        labelled = counts[Outcome.SUCCESS] + counts[Outcome.FAILURE]
        rate = f"{counts[Outcome.SUCCESS] / labelled:.0%}" if labelled else "-"
        summary.add_row(
            str(rnd),
            str(len(metas)),
            str(sum(m.length for m in metas)),
            str(counts[Outcome.SUCCESS]),
            str(counts[Outcome.FAILURE]),
            str(counts[Outcome.UNLABELLED]),
            rate,
            str(sum(m.intervention_steps for m in metas)),
        )
    console.print(summary)
    console.print(
        f"schema: cameras {[f'{c.name} {c.height}x{c.width}' for c in store.schema.cameras]}, "
        f"state {store.schema.state_dim}, action {store.schema.action_dim}, {store.schema.control_hz:g} Hz"
    )
    if args.episodes:
        table = Table(title=f"latest {args.episodes} episodes")
        for col in ("episode", "robot", "round", "policy", "task", "outcome", "by", "steps", "start"):
            table.add_column(col)
        for r in list(records.values())[-args.episodes :]:
            m = r.meta
            table.add_row(
                m.episode_id,
                m.robot_id,
                str(m.round),
                m.policy_version,
                m.task,
                m.outcome.value,
                m.labelled_by or "-",
                str(m.length),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.start_time)),
            )
        console.print(table)
    in_flight = store.in_flight()
    if in_flight:
        console.print(
            f"{len(in_flight)} uncommitted: " + ", ".join(f"{e.episode_id} ({e.status})" for e in in_flight)
        )
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    store = ReplayStore.open(args.store, storage_options=_options(args))
    report = store.verify(check_data=not args.no_data, stale_after_s=args.stale_after)
    what = "checksums of every chunk" if report.checked_data else "commit records only"
    console.print(f"{report.committed} committed episodes, {report.steps} steps; checked {what}")
    if report.problems:
        table = Table(title="damaged committed data")
        for col in ("episode", "array", "chunk", "problem"):
            table.add_column(col)
        for p in report.problems:
            table.add_row(p.episode_id, p.array, "-" if p.chunk is None else str(p.chunk), p.reason)
        console.print(table)
    if report.in_flight:
        table = Table(title="uncommitted episodes (never sampled)")
        for col in ("episode", "status", "robot", "steps flushed", "writer", "heartbeat age", "reason"):
            table.add_column(col)
        for e in report.in_flight:
            table.add_row(
                e.episode_id,
                e.status,
                e.robot_id,
                str(e.steps_flushed),
                f"{e.host}:{e.pid}",
                f"{e.heartbeat_age_s:.0f} s",
                e.reason or "-",
            )
        console.print(table)
    if args.quarantine:
        moved = store.quarantine_torn(stale_after_s=args.stale_after)
        console.print(f"set apart under torn/: {moved or 'nothing'}")
        report.in_flight = [e for e in report.in_flight if e.episode_id not in moved]
    if report.quarantined:
        console.print(f"{len(report.quarantined)} torn episodes already set apart under torn/")
    console.print("[green]OK[/green]" if report.ok else "[red]PROBLEMS FOUND[/red]")
    return 0 if report.ok else 1


def _filter(args: argparse.Namespace) -> EpisodeFilter:
    return EpisodeFilter(
        rounds=tuple(args.round) if args.round else None,
        outcomes=tuple(Outcome(o) for o in args.outcome) if args.outcome else None,
        tasks=tuple(args.task) if args.task else None,
    )


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from replay.lerobot_io import export_to_lerobot

    store = ReplayStore.open(args.store, storage_options=_options(args))
    ids = export_to_lerobot(
        store, args.out, repo_id=args.repo_id, episode_filter=_filter(args), use_videos=args.videos
    )
    console.print(f"exported {len(ids)} episodes to {args.out} (repo_id {args.repo_id})")
    return 0


def cmd_import(args: argparse.Namespace, console: Console) -> int:
    from replay.lerobot_io import import_from_lerobot

    ids = import_from_lerobot(
        args.root,
        args.store,
        repo_id=args.repo_id,
        round=args.round,
        outcome=Outcome(args.outcome),
        robot_id=args.robot_id,
        purpose=args.purpose,
        storage_options=_options(args),
    )
    console.print(
        f"imported {len(ids)} episodes into {args.store} as round {args.round} {args.purpose} episodes"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vivarl-replay", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--storage-options", help='JSON fsspec options, e.g. \'{"endpoint_url": "http://..."}\''
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="episodes, steps, success rate per round, size on disk")
    p.add_argument("store")
    p.add_argument("--episodes", type=int, default=10, help="list the latest N episodes (0: none)")
    p = sub.add_parser("verify", help="check every chunk against its commit checksum; report torn episodes")
    p.add_argument("store")
    p.add_argument("--no-data", action="store_true", help="check commit records and staging only")
    p.add_argument("--quarantine", action="store_true", help="move torn episodes to torn/ (data is kept)")
    p.add_argument(
        "--stale-after",
        type=float,
        default=DEFAULT_STALE_AFTER_S,
        help="seconds without a heartbeat after which a remote writer is presumed dead",
    )
    p = sub.add_parser("export", help="write a selection to a LeRobotDataset v3")
    p.add_argument("store")
    p.add_argument("out", help="new LeRobotDataset root folder")
    p.add_argument("--repo-id", default="vivarl/replay-export")
    p.add_argument("--round", type=int, action="append")
    p.add_argument("--outcome", action="append", choices=[o.value for o in Outcome])
    p.add_argument("--task", action="append")
    p.add_argument("--videos", action="store_true", help="encode videos (lossy) instead of PNG frames")
    p = sub.add_parser("import", help="add a LeRobotDataset's episodes (e.g. teleop demos) as round-0 data")
    p.add_argument("root", help="LeRobotDataset root folder")
    p.add_argument("store", help="store URL (created with the dataset's schema if absent)")
    p.add_argument("--repo-id", default="local/import")
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--outcome", default=Outcome.SUCCESS.value, choices=[o.value for o in Outcome])
    p.add_argument("--robot-id", default="lerobot-import")
    p.add_argument(
        "--purpose",
        default="demo",
        choices=["demo", "rollout"],
        help="demo: round 0's demonstrations (default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    commands = {"inspect": cmd_inspect, "verify": cmd_verify, "export": cmd_export, "import": cmd_import}
    try:
        return commands[args.command](args, console)
    except (ReplayError, FileNotFoundError, FileExistsError, KeyError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
