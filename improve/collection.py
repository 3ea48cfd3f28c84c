"""Collecting a stage's episodes across every arm, exactly once, through actor crashes and driver restarts.

The store is the ledger: a stage asks for as many episodes as are still missing from it (committed episodes of
this round and purpose), spreads them over the arms, and asks again for whatever a crashed arm did not commit.
A resumed run therefore neither loses nor duplicates an episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from checkpoints import version_name
from replay import EpisodeFilter, FrameIndex, Outcome, ReplayStore

log = logging.getLogger(__name__)


# Seeds an attempt may draw before the next attempt's range starts.
SEEDS_PER_ATTEMPT = 10_000


class CollectionError(RuntimeError):
    pass


def committed_episodes(store: ReplayStore, round_index: int, purpose: str) -> list[Any]:
    """Commit records of this round's episodes of one purpose (demo, rollout or eval)."""
    index = FrameIndex(store, EpisodeFilter(rounds=(round_index,), purposes=(purpose,)))
    index.refresh()
    return list(index.records.values())


def started_seeds(store: ReplayStore, round_index: int, purpose: str) -> set[int]:
    """Seeds of this round's episodes of one purpose that were started but never committed (torn, aborted or still
    being written, from their writers' heartbeats; or set apart with ``vivarl-replay verify --quarantine``): drawn
    already, so never drawn again."""
    drawn = [(e.seed, e.round, e.purpose) for e in store.in_flight()]
    drawn += [(q.get("seed"), q.get("round"), q.get("purpose")) for q in store.quarantined().values()]
    return {seed for seed, r, p in drawn if seed is not None and (r, p) == (round_index, purpose)}


def spread_seeds(seeds: list[int], arms: list[str]) -> dict[str, list[int]]:
    """Round-robin the seeds over the arms."""
    plan: dict[str, list[int]] = {arm: [] for arm in arms}
    for k, seed in enumerate(seeds):
        plan[arms[k % len(arms)]].append(seed)
    return {arm: seeds for arm, seeds in plan.items() if seeds}


def seeds_to_collect(
    committed: list[Any],
    target: int,
    seed_base: int,
    attempt: int,
    seeds: list[int] | None = None,
    started: AbstractSet[int] = frozenset(),
) -> list[int]:
    """The seeds still to run, given the episodes of (round, purpose) already committed and the seeds of those
    ``started`` but never committed (``started_seeds``).

    Fixed ``seeds`` (evaluation): exactly those not committed yet. Otherwise new seeds that never repeat, across
    attempts and driver restarts alike (arms finish out of order, so the committed seeds need not be the first
    ones): a retried episode is a new one, not a replay of a torn one.
    """
    have = {r.meta.seed for r in committed if r.meta.seed is not None}
    if seeds is not None:
        return [s for s in seeds if s not in have]
    drawn = have | set(started)
    first = max(seed_base + attempt * SEEDS_PER_ATTEMPT, max(drawn, default=seed_base - 1) + 1)
    return list(range(first, first + max(0, target - len(committed))))


def wait_until_reachable(actor: Any, timeout_s: float) -> bool:
    """Poll the actor's ``info`` until it answers (True), it is dead for good or ``timeout_s`` passes (False)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return True
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False
    return False


def collect(
    store: ReplayStore,
    actors: dict[str, Any],
    *,
    round_index: int,
    purpose: str,
    target: int,
    seed_base: int,
    max_attempts: int,
    seeds: list[int] | None = None,
    before_attempt: Callable[[list[str]], None] = lambda arms: None,
    on_progress: Callable[[int], None] = lambda done: None,
    restart_timeout_s: float = 300.0,
    max_arm_failures: int = 0,
    on_set_aside: Callable[[str, str], None] = lambda arm, reason: None,
    episode_deadline_s: float = 0.0,
) -> list[Any]:
    """Make the store hold ``target`` committed episodes of (round, purpose); returns their records.

    With ``seeds`` (evaluation), exactly those seeds are collected: a seed whose episode is committed is done, and
    a retry runs the missing seeds again, so every round is evaluated on the same scenes. Otherwise new seeds
    from ``seed_base`` are drawn and never repeat across attempts.

    ``before_attempt(arms)`` runs before each attempt with the arms still in the stage (the driver re-sends the
    deployed policy to them there, since a restarted actor comes back without one). An arm that Ray is restarting is waited for, up to
    ``restart_timeout_s``, before the next attempt.

    An arm that fails ``max_arm_failures`` times (0: never) is set aside for the rest of the stage, and
    ``on_set_aside(arm, reason)`` is told: the stage finishes on the other arms, and the next stage tries it
    again. With no arm left the stage fails, naming each arm's last error.

    An arm whose call has not returned after ``episode_deadline_s`` per episode asked of it (0: no deadline) is
    killed for Ray to restart, and the call counts as one of its failures.
    """
    import ray

    actors = dict(actors)
    failures: dict[str, int] = {}
    last_error: dict[str, str] = {}
    for attempt in range(max_attempts):
        # In flight first: a commit moves an episode from staging to the store atomically, so one that commits
        # between the two reads is still seen by the second.
        started = set() if seeds is not None else started_seeds(store, round_index, purpose)
        committed = committed_episodes(store, round_index, purpose)
        done = len(committed)
        on_progress(done)
        todo = seeds_to_collect(committed, target, seed_base, attempt, seeds, started)
        if not todo:
            return committed
        before_attempt(sorted(actors))
        plan = spread_seeds(todo, sorted(actors))
        pending = {
            actors[arm].run_episodes.remote(purpose, round_index, seeds): arm for arm, seeds in plan.items()
        }
        started = time.monotonic()
        deadlines = {
            arm: started + episode_deadline_s * len(seeds) if episode_deadline_s > 0 else float("inf")
            for arm, seeds in plan.items()
        }
        hung: dict[str, str] = {}
        while pending:
            live = [deadlines[a] for a in pending.values() if a not in hung]
            timeout = None
            if live and min(live) < float("inf"):
                timeout = max(min(live) - time.monotonic(), 0.0)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not ready:
                for arm in [
                    a for a in pending.values() if a not in hung and deadlines[a] <= time.monotonic()
                ]:
                    hung[arm] = (
                        f"no answer within {episode_deadline_s * len(plan[arm]):.0f} s for {len(plan[arm])} "
                        f"episodes (loop.episode_deadline_s={episode_deadline_s:g} per episode): the arm's actor "
                        "was restarted"
                    )
                    log.error(
                        "arm %s is hung during %s of round %d: %s", arm, purpose, round_index, hung[arm]
                    )
                    ray.kill(actors[arm], no_restart=False)
                continue  # a killed arm's call now fails, and is counted below
            arm = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                log.warning("arm %s failed during %s of round %d: %s", arm, purpose, round_index, err)
                failures[arm] = failures.get(arm, 0) + 1
                last_error[arm] = hung.get(arm) or root_cause_line(err)
                if max_arm_failures and failures[arm] >= max_arm_failures:
                    reason = f"failed {failures[arm]} times: {last_error[arm]}"
                    log.error(
                        "arm %s set aside for the rest of round %d's %s: %s",
                        arm,
                        round_index,
                        purpose,
                        reason,
                    )
                    on_set_aside(arm, reason)
                    del actors[arm]
                elif isinstance(err, ray.exceptions.ActorUnavailableError):
                    # Ray is still restarting the arm's process: an attempt made now would fail at once, so
                    # without waiting a slow restart (a loaded machine, a robot's slow connect) burns them all.
                    wait_until_reachable(actors[arm], restart_timeout_s)
            on_progress(len(committed_episodes(store, round_index, purpose)))
        if not actors:
            arms = "; ".join(f"{arm}: {error}" for arm, error in sorted(last_error.items()))
            raise CollectionError(
                f"round {round_index}: every arm was set aside during {purpose} ({arms}); fix them and run the "
                "same command again to resume"
            )
    records = committed_episodes(store, round_index, purpose)
    if seeds is not None:
        target = len(seeds)
    if len(records) < target:
        raise CollectionError(
            f"round {round_index}: only {len(records)} of {target} {purpose} episodes after {max_attempts} "
            "attempts; check the arms (vivarl-replay verify reports torn episodes)"
        )
    return records


def episode_metrics(records: list[Any], control_hz: float) -> dict[str, float]:
    """Success rate, mean length, intervention rate and successes per robot-hour of a set of episodes."""
    if not records:
        return {}
    labelled = [r for r in records if r.meta.outcome is not Outcome.UNLABELLED]
    successes = sum(r.meta.outcome is Outcome.SUCCESS for r in records)
    steps = sum(r.meta.length for r in records)
    robot_hours = steps / control_hz / 3600.0
    return {
        "episodes": float(len(records)),
        "success_rate": successes / len(labelled) if labelled else float("nan"),
        "mean_length": steps / len(records),
        "intervention_rate": sum(r.meta.intervention_steps for r in records) / max(steps, 1),
        "successes_per_hour": successes / robot_hours if robot_hours > 0 else 0.0,
        "unlabelled": float(len(records) - len(labelled)),
    }


def arm_utilisation(records: list[Any], arms: list[str], window: tuple[float, float]) -> dict[str, float]:
    """Per arm, the share of the wall-clock ``window`` (start, end; epoch seconds) it spent in episodes (start to
    commit, the outcome's answer included), and the mean over ``arms`` as "mean": what the arms did with a round's
    wall time. Episodes count by when they ran, whichever round they were collected for (rollouts collected ahead
    run during the round before theirs)."""
    start, end = window
    if end <= start or not arms:
        return {}
    busy = dict.fromkeys(arms, 0.0)
    for record in records:
        if record.meta.robot_id in busy:
            overlap = min(record.meta.end_time, end) - max(record.meta.start_time, start)
            busy[record.meta.robot_id] += max(overlap, 0.0)
    shares = {arm: min(seconds / (end - start), 1.0) for arm, seconds in busy.items()}
    return {**shares, "mean": sum(shares.values()) / len(shares)}


def staleness(records: list[Any], state: Any, r: int) -> dict[str, float]:
    """How long data and weights waited in round r (seconds; missing when not measurable):

    - ``label_s``: the median time from a training episode's commit to the labelling that first took it in
      (round r's labelling takes round r's rollouts, or demonstrations in round 0);
    - ``policy_first_use_s``: from the previous round's deployment of its policy (its publication to the arms;
      the end of its training in runs from before deployments were timed) to the first rollout an arm ran with
      that version (measured in the round that collects with it; missing when the gate kept the old one).
    """
    outputs = state.round_outputs(r)
    out: dict[str, float] = {}
    purpose = "demo" if r == 0 else "rollout"
    labelled_at = outputs.get("labelled_at")
    ends = [x.meta.end_time for x in records if x.meta.round == r and x.meta.purpose == purpose]
    if labelled_at is not None and ends:
        out["label_s"] = float(np.median([labelled_at - end for end in ends]))
    previous = state.round_outputs(r - 1) if r > 0 else {}
    published_at = previous.get("deployed_at", previous.get("trained_at"))
    version = previous.get("policy_version")
    if published_at is not None and version is not None:
        name = version_name(version)
        starts = [
            x.meta.start_time
            for x in records
            if x.meta.policy_version == name and x.meta.purpose == "rollout"
        ]
        if starts:
            out["policy_first_use_s"] = float(min(starts) - published_at)
    return out


def root_cause_line(err: BaseException) -> str:
    """The root cause's message, one line: Ray wraps a remote error in a traceback."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
