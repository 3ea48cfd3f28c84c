"""Action chunks predicted off the control thread, so that a real arm's control loop never waits on inference.

``AsyncChunkPolicy`` wraps a ``Policy`` behind the same ``ActionSource`` calls. A worker thread predicts the next
chunk from the newest observation while the arm executes the current one: once the actions left in the queue fall
to ``chunk_size_threshold`` of a chunk, the observation of that step is handed to the worker (as LeRobot's async
RobotClient sends one below its ``chunk_size_threshold``). ``act`` only ever takes what is queued for this step; if
nothing is (the first steps of an episode, an inference that overran), it returns None and the episode loop holds
the arm, which is counted.

A chunk predicted from the observation of step t holds the actions of steps t, t+1, ...; when it arrives at step
t + d, its first d actions are already history and are dropped, and the rest is merged with what is queued for
the same steps (``merge``):

* ``latest``: the new chunk replaces the queued actions;
* ``average``: ``average_weight`` of the new chunk plus the rest of the queued one, step by step;
* ``rtc``: a real-time-chunking-style blend. The first ``rtc_commit_steps`` queued actions are committed and kept
  as they are (the arm is already moving on them); over the rest of the overlap the weight of the new chunk rises
  linearly from 0 to 1, RTC's soft mask, so the arm passes from the old plan into the new one without a jump. (RTC
  also guides the new chunk's sampling to agree with the committed prefix; this blends after sampling, which works
  for every head, the regression ones included.)

A chunk whose observation is older than ``max_chunk_age_s`` when it arrives is dropped, and so is any queued action
planned from an observation that old: acting on a stale plan is worse than holding. Classifier-free guidance and
the relative-to-state actions are the wrapped ``Policy``'s own, so this works unchanged for the built-in policy, ACT
and diffusion. Temporal ensembling (``temporal_ensemble``) is a synchronous mode; here ``merge`` takes its place.

Threads rather than a process: inference is torch, which releases the GIL in its kernels, so the control thread
keeps its period (``benchmarks/bench_actors.py`` measures it).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from policy.config import PolicyConfig
from policy.deploy import Policy
from robot_io.spec import Observation

log = logging.getLogger(__name__)

INFERENCE_MODES = ("auto", "async", "sync")
MERGE_RULES = ("latest", "average", "rtc")


@dataclass
class InferenceConfig:
    """How an arm's actor runs its policy: on the control thread, or with chunks predicted in a worker."""

    # "auto": asynchronous on paced arms (every real arm), synchronous on the unpaced simulator, where the loop
    # may simply wait; "async" or "sync" to choose.
    mode: str = "auto"
    # Ask for the next chunk once the queued actions fall to this fraction of a chunk (0 < threshold <= 1;
    # LeRobot's chunk_size_threshold). Higher: new chunks more often, more overlap to merge, more compute.
    chunk_size_threshold: float = 0.5
    # How a new chunk is merged with the actions queued for the same steps: latest, average or rtc.
    merge: str = "rtc"
    # "average": the new chunk's weight.
    average_weight: float = 0.5
    # "rtc": queued actions kept as they are at the head of the queue before the blend starts.
    rtc_commit_steps: int = 1
    # Drop a chunk, or a queued action, planned from an observation older than this (seconds).
    max_chunk_age_s: float = 1.0
    # Predict once from a blank observation when the policy is loaded (between episodes): a model's first call
    # is several times slower than the rest (allocations, kernel selection), and would fall inside an episode.
    warmup: bool = True
    # Python's thread switch interval while an asynchronous policy runs (seconds; 0: leave Python's 5 ms). The
    # control thread waits at most this long for the interpreter when the inference thread holds it.
    switch_interval_s: float = 0.001

    def __post_init__(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise ValueError(f"inference.mode must be one of {list(INFERENCE_MODES)}, got {self.mode!r}")
        if self.merge not in MERGE_RULES:
            raise ValueError(f"inference.merge must be one of {list(MERGE_RULES)}, got {self.merge!r}")
        if not 0.0 < self.chunk_size_threshold <= 1.0:
            raise ValueError(
                f"inference.chunk_size_threshold must be in (0, 1], got {self.chunk_size_threshold}"
            )
        if not 0.0 <= self.average_weight <= 1.0:
            raise ValueError(f"inference.average_weight must be in [0, 1], got {self.average_weight}")
        if self.switch_interval_s < 0:
            raise ValueError(f"inference.switch_interval_s must be >= 0, got {self.switch_interval_s}")
        if self.rtc_commit_steps < 0 or self.max_chunk_age_s <= 0:
            raise ValueError("inference.rtc_commit_steps must be >= 0 and inference.max_chunk_age_s > 0")

    def is_async(self, paced: bool) -> bool:
        return self.mode == "async" or (self.mode == "auto" and paced)


@dataclass
class AsyncChunkStats:
    """What happened to the chunks of the episodes so far (``reset`` does not clear it; subtract two readings)."""

    steps: int = 0
    # Steps with no action ready: the loop held the arm.
    holds: int = 0
    chunks: int = 0
    # Chunks (and queued actions) dropped as older than max_chunk_age_s, or as planned before a discard/reset.
    chunks_too_old: int = 0
    actions_too_old: int = 0
    chunks_discarded: int = 0
    inference_s_total: float = 0.0
    inference_s_max: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class _Planned:
    step: int
    action: np.ndarray
    observed_at: float


@dataclass
class _Request:
    epoch: int
    step: int
    observation: Observation
    observed_at: float


@dataclass
class _Chunk:
    epoch: int
    step: int
    actions: np.ndarray
    observed_at: float
    inference_s: float


@dataclass
class _Slots:
    """The one pending request and the one finished chunk (a newer one replaces an unread older one)."""

    request: _Request | None = None
    chunk: _Chunk | None = None
    error: BaseException | None = None
    busy: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)


class AsyncChunkPolicy:
    """See the module docstring. ``clock`` is injectable for tests; ``close`` stops the worker."""

    def __init__(
        self,
        policy: Policy,
        config: InferenceConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.config = config or InferenceConfig()
        self.stats = AsyncChunkStats()
        self._clock = clock
        self._queue: list[_Planned] = []
        self._step = 0
        self._epoch = 0
        self._slots = _Slots()
        self._stop = False
        # Held while the worker runs the model: reset() waits for it (between episodes, the arm idle) so that
        # reseeding never races a prediction.
        self._model_lock = threading.Lock()
        if self.config.switch_interval_s > 0:
            sys.setswitchinterval(self.config.switch_interval_s)
        if self.config.warmup:
            self.policy.predict_chunks([blank_observation(self.policy.config)])
        self._worker = threading.Thread(target=self._work, name="vivarl-chunk-inference", daemon=True)
        self._worker.start()

    # -- ActionSource ---------------------------------------------------------------------------------------
    @property
    def version(self) -> int | None:
        return self.policy.version

    def reset(self, seed: int | None = None) -> None:
        self._forget()
        with self._model_lock:
            self.policy.reset(seed)
        self._step = 0

    def discard_plan(self) -> None:
        """A corrector took over: drop the queue and whatever is being predicted from before the takeover."""
        self._forget()

    def act(self, observation: Observation) -> np.ndarray | None:
        """The action planned for this step, or None (nothing ready: the loop holds the arm). Never waits."""
        now = self._clock()
        self._raise_worker_error()
        self._take_finished_chunk(now)
        fresh = [p for p in self._queue if now - p.observed_at <= self.config.max_chunk_age_s]
        self.stats.actions_too_old += len(self._queue) - len(fresh)
        self._queue = fresh
        if len(self._queue) <= self.config.chunk_size_threshold * self.policy.config.chunk_size:
            self._request(_Request(self._epoch, self._step, observation, now))
        self._queue = [p for p in self._queue if p.step >= self._step]
        planned = self._queue.pop(0) if self._queue and self._queue[0].step == self._step else None
        self._step += 1
        self.stats.steps += 1
        if planned is None:
            self.stats.holds += 1
            return None
        return planned.action

    def ready(self) -> bool:
        """A predicted chunk is waiting to be merged at the next ``act``."""
        with self._slots.lock:
            return self._slots.chunk is not None

    def close(self) -> None:
        with self._slots.lock:
            self._stop = True
            self._slots.lock.notify_all()
        self._worker.join(timeout=5.0)

    # -- internals ------------------------------------------------------------------------------------------
    def _forget(self) -> None:
        with self._slots.lock:
            self._epoch += 1
            if self._slots.chunk is not None:
                self.stats.chunks_discarded += 1
            # A failure of a prediction from before (the last episode's, a stale plan's) is no failure of the next.
            self._slots.request, self._slots.chunk, self._slots.error = None, None, None
        self._queue = []

    def _request(self, request: _Request) -> None:
        with self._slots.lock:
            if self._slots.busy or self._slots.request is not None:
                return  # one prediction at a time; the next request goes out from a newer observation
            self._slots.request = request
            self._slots.lock.notify_all()

    def _take_finished_chunk(self, now: float) -> None:
        with self._slots.lock:
            chunk, self._slots.chunk = self._slots.chunk, None
        if chunk is None or chunk.epoch != self._epoch:
            return
        self.stats.chunks += 1
        self.stats.inference_s_total += chunk.inference_s
        self.stats.inference_s_max = max(self.stats.inference_s_max, chunk.inference_s)
        if now - chunk.observed_at > self.config.max_chunk_age_s:
            self.stats.chunks_too_old += 1
            return
        late = self._step - chunk.step
        new = [
            _Planned(chunk.step + k, action, chunk.observed_at)
            for k, action in enumerate(chunk.actions)
            if k >= late
        ]
        self._queue = merge_planned(self._queue, new, self.config)

    def _raise_worker_error(self) -> None:
        with self._slots.lock:
            error, self._slots.error = self._slots.error, None
        if error is not None:
            raise RuntimeError(f"policy inference failed in the chunk worker: {error}") from error

    def _work(self) -> None:
        slots = self._slots
        while True:
            with slots.lock:
                while slots.request is None and not self._stop:
                    slots.lock.wait()
                if self._stop:
                    return
                request, slots.request, slots.busy = slots.request, None, True
            started = time.monotonic()
            try:
                with self._model_lock:
                    actions = self.policy.predict_chunks([request.observation])[0]
            except BaseException as exc:  # noqa: BLE001 - handed to the control thread, which raises it
                log.exception("chunk inference failed")
                with slots.lock:
                    slots.error, slots.busy = exc, False
                continue
            elapsed = time.monotonic() - started
            with slots.lock:
                slots.busy = False
                if request.epoch == self._epoch:
                    slots.chunk = _Chunk(
                        request.epoch, request.step, actions.astype(np.float32), request.observed_at, elapsed
                    )


def merge_planned(queued: list[_Planned], new: list[_Planned], config: InferenceConfig) -> list[_Planned]:
    """The queue after a new chunk arrives: queued actions for steps the new chunk does not cover stay in front
    (none, normally), the overlap is merged by ``config.merge``, and the new chunk's tail follows."""
    if not new:
        return queued
    by_step = {p.step: p for p in queued}
    first_new = new[0].step
    merged = [p for p in queued if p.step < first_new]
    overlap = [p for p in new if p.step in by_step]
    for k, planned in enumerate(new):
        old = by_step.get(planned.step)
        if old is None:
            merged.append(planned)
            continue
        if config.merge == "latest":
            weight = 1.0
        elif config.merge == "average":
            weight = config.average_weight
        else:
            commit = config.rtc_commit_steps
            if k < commit:
                weight = 0.0
            else:
                blend = max(1, len(overlap) - commit)
                weight = min(1.0, (k - commit + 1) / (blend + 1))
        if weight == 0.0:
            merged.append(old)
        else:
            action = (1.0 - weight) * old.action + weight * planned.action
            # The merged action is as fresh as its newer part.
            merged.append(_Planned(planned.step, action.astype(np.float32), planned.observed_at))
    return merged


def blank_observation(config: PolicyConfig) -> Observation:
    """A black frame per camera and a zero state: enough for a policy's warm-up call."""
    side = config.image_size
    return Observation(
        images={camera: np.zeros((side, side, 3), dtype=np.uint8) for camera in config.cameras},
        state=np.zeros(config.state_dim, dtype=np.float32),
        timestamp=0.0,
    )
