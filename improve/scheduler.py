"""Arms that never wait for the learners (``loop.mode=continual``): a versioned policy registry, and a scheduler
that gives every arm its next episode at each episode boundary.

The driver publishes every trained policy in the ``PolicyRegistry`` (a candidate, to be scored on the evaluation
seeds) and marks the one the promotion gate deploys. The ``ArmScheduler`` keeps each arm busy, one episode per
call: a candidate's evaluation seeds first, then rollouts with the deployed policy for the round now collecting.
A call carries the policy it needs when the arm does not hold that version yet, so a newly deployed policy reaches
an arm at its next episode boundary (never mid-episode), and an arm that Ray restarted gets its policy again.

The store stays the ledger: the driver's stages wait for counts of committed episodes, and a resumed driver starts
a new scheduler whose seeds continue after those the store has seen, so no episode is lost or counted twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from improve.collection import CollectionError, committed_episodes, root_cause_line, started_seeds
from replay import ReplayStore

log = logging.getLogger(__name__)

# A round's rollouts drawn by the scheduler take seeds from the upper half of the round's range, so that they never
# meet the seeds of the round's own collection attempts (``improve.collection.collect``).
STREAM_SEED_OFFSET = 50_000


@dataclass(frozen=True)
class PublishedPolicy:
    version: str
    # What an arm's ``run_episodes(policy=...)`` takes: a PackedCheckpoint, or Ray's handle to one.
    packed: Any
    published_at: float


class PolicyRegistry:
    """Every policy version the driver has published, and which one is deployed. Thread-safe: the scheduler reads
    it at each episode boundary while the driver publishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, PublishedPolicy] = {}
        self._deployed: str | None = None
        self.deployed_at: dict[str, float] = {}

    def publish(self, version: str, packed: Any) -> PublishedPolicy:
        with self._lock:
            if version not in self._versions:
                self._versions[version] = PublishedPolicy(version, packed, time.time())
            return self._versions[version]

    def deploy(self, version: str) -> None:
        with self._lock:
            if version not in self._versions:
                raise KeyError(f"policy {version} was never published, so it cannot be deployed")
            if self._deployed != version:
                self.deployed_at[version] = time.time()
            self._deployed = version

    def get(self, version: str) -> PublishedPolicy:
        with self._lock:
            if version not in self._versions:
                raise KeyError(f"policy {version} was never published (published: {sorted(self._versions)})")
            return self._versions[version]

    def deployed(self) -> PublishedPolicy | None:
        with self._lock:
            return None if self._deployed is None else self._versions[self._deployed]


@dataclass
class _Call:
    arm: str
    purpose: str  # "rollout", "eval" or "probe" (asking a restarted arm whether it is back)
    round: int
    seed: int
    version: str
    deadline: float


@dataclass
class _Evaluation:
    round: int
    version: str
    seeds: list[int]
    to_ask: deque[int]


class ArmScheduler:
    """Keeps every arm in episodes: evaluation seeds of a candidate when one needs scoring, otherwise rollouts with
    the deployed policy for ``rollout_round`` (never past ``last_round``), up to ``rollout_limit`` rollouts of that
    round before its collect stage asks for them (0: no limit). ``collect_rollouts`` and ``evaluate`` are the
    driver's stages; they block until the store holds what they asked for, while the arms go on with whatever else
    there is to do.

    An arm whose call fails is given its policy again with its next call (a restarted actor has none); one that
    fails ``max_arm_failures`` times in a row (0: never) leaves until the next stage, and ``on_set_aside(arm,
    reason)`` is told. One whose call outlives ``episode_deadline_s`` is killed for Ray to restart.
    """

    def __init__(
        self,
        store: ReplayStore,
        actors: dict[str, Any],
        registry: PolicyRegistry,
        *,
        seed_base: Callable[[int], int],
        rollout_round: int | None = None,
        last_round: int | None = None,
        rollout_limit: int = 0,
        episode_deadline_s: float = 0.0,
        max_arm_failures: int = 0,
        on_set_aside: Callable[[str, str], None] = lambda arm, reason: None,
        retry_after_s: float = 1.0,
        poll_s: float = 0.2,
    ) -> None:
        self.store, self.actors, self.registry = store, dict(actors), registry
        self.seed_base, self.rollout_limit, self.last_round = seed_base, rollout_limit, last_round
        self.episode_deadline_s, self.max_arm_failures = episode_deadline_s, max_arm_failures
        self.on_set_aside, self.retry_after_s, self.poll_s = on_set_aside, retry_after_s, poll_s
        self._lock = threading.Condition()
        self._rollout_round = rollout_round
        self._collecting: int | None = None  # the round whose collect stage is waiting: no limit for it
        self._evaluation: _Evaluation | None = None
        self._pending: dict[Any, _Call] = {}
        self._held: dict[str, str | None] = dict.fromkeys(self.actors)
        self._resting: dict[str, float] = {}  # arm -> when to ask it whether it is back
        self._next_seed: dict[int, int] = {}
        self._failures: dict[str, int] = {}
        self._rollouts_asked: dict[int, int] = {}
        self.left: dict[str, str] = {}
        self.error: BaseException | None = None
        self.episodes = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the driver's side ----------------------------------------------------------------------------------
    def start(self) -> ArmScheduler:
        self._thread = threading.Thread(target=self._run, name="arm-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask for no more episodes and wait for those under way: the arms are free on return."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def rollout_round(self) -> int | None:
        return self._rollout_round

    def set_rollout_round(self, round_index: int) -> None:
        with self._lock:
            self._rollout_round = round_index

    def collect_rollouts(self, round_index: int, version: str, target: int) -> list[Any]:
        """Round ``round_index``'s rollouts: collect them (the scheduler may have been collecting them for a while,
        with an older deployed policy) until the store holds ``target`` that ran ``version``; then the arms go on
        with the next round's, and this returns once round ``round_index``'s episodes under way have committed."""
        self._rejoin_left_arms()
        with self._lock:
            self._rollout_round = self._collecting = round_index
        while True:
            self._raise_if_stuck(f"round {round_index}'s rollouts")
            records = committed_episodes(self.store, round_index, "rollout")
            if sum(r.meta.policy_version == version for r in records) >= target:
                break
            time.sleep(self.poll_s)
        after = round_index + 1
        with self._lock:
            # No rollouts past the run's last round: nothing would train on them, and on real arms they cost the
            # operator corrections and outcome labels.
            self._rollout_round = None if self.last_round is not None and after > self.last_round else after
            self._collecting = None
            self._lock.notify_all()
        self._wait_until(lambda: not self._under_way("rollout", round_index), "round's last rollouts")
        return committed_episodes(self.store, round_index, "rollout")

    def evaluate(self, round_index: int, version: str, seeds: list[int]) -> list[Any]:
        """Policy ``version`` (published) on exactly these ``seeds``, as the arms' next episodes; returns the
        committed evaluation episodes of the round. A seed whose episode failed is asked again."""
        self.registry.get(version)  # fails here, naming the version, rather than in an arm
        self._rejoin_left_arms()
        done = {r.meta.seed for r in committed_episodes(self.store, round_index, "eval")}
        with self._lock:
            self._evaluation = _Evaluation(
                round_index, version, list(seeds), deque(s for s in seeds if s not in done)
            )
            self._lock.notify_all()
        try:
            while True:
                self._raise_if_stuck(f"round {round_index}'s evaluation")
                records = committed_episodes(self.store, round_index, "eval")
                if set(seeds) <= {r.meta.seed for r in records}:
                    break
                time.sleep(self.poll_s)
            self._wait_until(lambda: not self._under_way("eval", round_index), "evaluation's last episodes")
        finally:
            with self._lock:
                self._evaluation = None
        return committed_episodes(self.store, round_index, "eval")

    # -- internals ------------------------------------------------------------------------------------------
    def _raise_if_stuck(self, what: str) -> None:
        if self.error is not None:
            raise CollectionError(f"{what}: the arm scheduler stopped: {self.error}") from self.error
        with self._lock:
            if self.actors and set(self.left) >= set(self.actors):
                arms = "; ".join(f"{arm}: {why}" for arm, why in sorted(self.left.items()))
                raise CollectionError(
                    f"{what}: every arm was set aside ({arms}); fix them and run the same command again to resume"
                )

    def _wait_until(self, done: Callable[[], bool], what: str) -> None:
        while True:
            with self._lock:
                if done():
                    return
            self._raise_if_stuck(what)
            time.sleep(self.poll_s / 4)

    def _under_way(self, purpose: str, round_index: int) -> bool:
        return any(c.purpose == purpose and c.round == round_index for c in self._pending.values())

    def _rejoin_left_arms(self) -> None:
        """A stage gives every arm that left another chance, as ``collect`` does."""
        with self._lock:
            for arm in self.left:
                self._failures[arm] = 0
                self._resting[arm] = time.monotonic()
            self.left.clear()

    def _run(self) -> None:
        try:
            while not (self._stopping.is_set() and not self._pending):
                if not self._stopping.is_set():
                    with self._lock:
                        for arm in sorted(self.actors):
                            if self._is_free(arm):
                                self._ask(arm)
                self._await_one()
        except BaseException as exc:  # noqa: BLE001 - a scheduler that fails must still hand the arms back
            self.error = exc
            log.error("the arm scheduler stopped: %s", exc)
            self._drain()

    def _drain(self) -> None:
        import ray

        for ref in list(self._pending):
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001 - keep draining: the arms must be free on return
                log.error("arm %s: %s", self._pending[ref].arm, root_cause_line(err))
        self._pending.clear()

    def _is_free(self, arm: str) -> bool:
        if arm in self.left or any(c.arm == arm for c in self._pending.values()):
            return False
        return self._resting.get(arm, 0.0) <= time.monotonic()

    def _ask(self, arm: str) -> None:
        """Give a free arm its next call (lock held): a probe after a failure, an evaluation seed, a rollout."""
        if arm in self._resting:
            self._send(arm, "probe", -1, -1, "", self.actors[arm].info.remote())
            return
        evaluation = self._evaluation
        if evaluation is not None and evaluation.to_ask:
            seed = evaluation.to_ask.popleft()
            self._run_episode(arm, "eval", evaluation.round, seed, evaluation.version)
            return
        deployed = self.registry.deployed()
        r = self._rollout_round
        if deployed is None or r is None:
            return
        if r not in self._rollouts_asked:
            self._rollouts_asked[r] = len(committed_episodes(self.store, r, "rollout"))
        if self.rollout_limit and r != self._collecting and self._rollouts_asked[r] >= self.rollout_limit:
            return
        self._rollouts_asked[r] += 1
        self._run_episode(arm, "rollout", r, self._draw_seed(r), deployed.version)

    def _run_episode(self, arm: str, purpose: str, r: int, seed: int, version: str) -> None:
        # The policy travels only to an arm that does not hold it: it is swapped in before the episode starts.
        policy = None if self._held.get(arm) == version else self.registry.get(version).packed
        self._held[arm] = version
        call = self.actors[arm].run_episodes.remote(purpose, r, [seed], policy)
        self._send(arm, purpose, r, seed, version, call)

    def _send(self, arm: str, purpose: str, r: int, seed: int, version: str, call: Any) -> None:
        deadline = math.inf
        if self.episode_deadline_s > 0 and purpose != "probe":
            deadline = time.monotonic() + self.episode_deadline_s
        self._pending[call] = _Call(arm, purpose, r, seed, version, deadline)

    def _draw_seed(self, r: int) -> int:
        if r not in self._next_seed:
            band = self.seed_base(r) + STREAM_SEED_OFFSET
            drawn = started_seeds(self.store, r, "rollout")  # before the committed ones, as in collect
            drawn |= {rec.meta.seed for rec in committed_episodes(self.store, r, "rollout")}
            self._next_seed[r] = max([band, *(s + 1 for s in drawn if s is not None and s >= band)])
        seed = self._next_seed[r]
        self._next_seed[r] += 1
        return seed

    def _await_one(self) -> None:
        import ray

        if not self._pending:
            time.sleep(self.poll_s)
            return
        soonest = min(c.deadline for c in self._pending.values())
        timeout = min(self.poll_s, max(soonest - time.monotonic(), 0.0))
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready:
            now = time.monotonic()
            for call in self._pending.values():
                if call.deadline <= now:
                    log.error(
                        "arm %s is hung in a %s episode of round %d (no answer within %g s, "
                        "loop.episode_deadline_s): restarted",
                        call.arm,
                        call.purpose,
                        call.round,
                        self.episode_deadline_s,
                    )
                    ray.kill(self.actors[call.arm], no_restart=False)
                    call.deadline = math.inf
            return
        with self._lock:
            call = self._pending.pop(ready[0])
            try:
                answer = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - any failure of one arm's call is that arm's
                self._failed(call, err)
            else:
                if call.purpose == "probe":
                    self._resting.pop(call.arm, None)
                else:
                    self._failures[call.arm] = 0
                    self.episodes += len(answer)
            self._lock.notify_all()

    def _failed(self, call: _Call, err: Exception) -> None:
        """Lock held. The arm rests, then is asked whether it is back; its policy goes with its next episode."""
        import ray

        arm, reason = call.arm, root_cause_line(err)
        self._held[arm] = None
        self._resting[arm] = time.monotonic() + self.retry_after_s
        if call.purpose == "eval" and self._evaluation is not None and self._evaluation.round == call.round:
            self._evaluation.to_ask.appendleft(call.seed)  # the same scene again: every round is scored on it
        if call.purpose == "rollout":
            self._rollouts_asked[call.round] -= 1
        if call.purpose == "probe" and isinstance(err, ray.exceptions.ActorUnavailableError):
            return  # Ray is still restarting it: not a failure of its own
        self._failures[arm] = self._failures.get(arm, 0) + 1
        log.warning(
            "arm %s failed during a %s episode of round %d: %s", arm, call.purpose, call.round, reason
        )
        if self.max_arm_failures and self._failures[arm] >= self.max_arm_failures:
            why = f"failed {self._failures[arm]} times: {reason}"
            self.left[arm] = why
            self._resting.pop(arm, None)
            log.error("arm %s set aside until the next stage: %s", arm, why)
            self.on_set_aside(arm, why)
