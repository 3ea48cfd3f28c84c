"""Which frames a learner sees: episode filters, a flat (episode, step) index, and a sampler of keys.

The sampler never touches data. It yields keys ``(episode_id, step)``, which name a frame of an immutable
committed episode, so the index can be refreshed between epochs in the main process while DataLoader workers
keep reading with whatever they already have open. No torch here: DataLoader accepts any iterable as sampler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from replay.schema import EpisodeRecord, Outcome, spans_to_mask
from replay.store import ReplayStore

FrameKey = tuple[str, int]
InterventionFilter = Literal["any", "only", "exclude"]
Split = Literal["all", "train", "holdout"]


def is_held_out(episode_id: str, fraction: float) -> bool:
    """Whether an episode falls in the held-out ``fraction``: decided by a hash of its id alone, so the split
    never changes as episodes arrive and every process (learner, driver, evaluation CLI) agrees on it."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(episode_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass(frozen=True)
class EpisodeFilter:
    """Which committed episodes (and steps) to sample; ``None`` accepts everything for that field."""

    rounds: tuple[int, ...] | None = None
    outcomes: tuple[Outcome, ...] | None = None
    tasks: tuple[str, ...] | None = None
    robots: tuple[str, ...] | None = None
    # Episode purposes to keep ("demo", "rollout", "eval").
    purposes: tuple[str, ...] | None = None
    # Per step: "only" keeps human-correction steps, "exclude" drops them.
    intervention: InterventionFilter = "any"
    # (kind, key) derived columns an episode must have, e.g. (("indicator", "run3"),) for policy training.
    require_derived: tuple[tuple[str, str], ...] = ()
    # A stable split by episode id (``is_held_out``): "train" drops the held-out fraction, "holdout" keeps only it.
    split: Split = "all"
    holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.split not in ("all", "train", "holdout"):
            raise ValueError(f"split must be 'all', 'train' or 'holdout', got {self.split!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.intervention not in ("any", "only", "exclude"):
            raise ValueError(
                f"intervention filter must be 'any', 'only' or 'exclude', got {self.intervention!r}"
            )
        if self.outcomes is not None:
            object.__setattr__(self, "outcomes", tuple(Outcome(o) for o in self.outcomes))
        for name in ("rounds", "tasks", "robots", "purposes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "require_derived", tuple(tuple(p) for p in self.require_derived))

    def accepts(self, record: EpisodeRecord) -> bool:
        meta = record.meta
        return (
            (self.rounds is None or meta.round in self.rounds)
            and (self.outcomes is None or meta.outcome in self.outcomes)
            and (self.tasks is None or meta.task in self.tasks)
            and (self.robots is None or meta.robot_id in self.robots)
            and (self.purposes is None or meta.purpose in self.purposes)
            and (
                self.split == "all"
                or is_held_out(meta.episode_id, self.holdout_fraction) == (self.split == "holdout")
            )
        )

    def step_mask(self, record: EpisodeRecord) -> np.ndarray:
        intervened = spans_to_mask(record.intervention_spans, record.meta.length)
        if self.intervention == "only":
            return intervened
        if self.intervention == "exclude":
            return ~intervened
        return np.ones(record.meta.length, dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcomes"] = None if self.outcomes is None else [o.value for o in self.outcomes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeFilter:
        def tup(v: Any) -> tuple | None:
            return None if v is None else tuple(v)

        return cls(
            rounds=tup(d.get("rounds")),
            outcomes=tup(d.get("outcomes")),
            tasks=tup(d.get("tasks")),
            robots=tup(d.get("robots")),
            purposes=tup(d.get("purposes")),
            intervention=d.get("intervention", "any"),
            require_derived=tuple(tuple(p) for p in d.get("require_derived", ())),
            split=d.get("split", "all"),
            holdout_fraction=float(d.get("holdout_fraction", 0.0)),
        )


class FrameIndex:
    """A flat index of the frames of committed episodes that pass a filter.

    ``refresh()`` picks up newly committed episodes and relabels; ``load_state_dict`` rebuilds an exact earlier
    index (same episodes, same order) so a resumed sampler replays the same permutation.
    """

    def __init__(self, store: ReplayStore, episode_filter: EpisodeFilter | None = None) -> None:
        self.store = store
        self.filter = episode_filter or EpisodeFilter()
        self.episode_ids: list[str] = []
        self.records: dict[str, EpisodeRecord] = {}
        self.episode_of = np.zeros(0, dtype=np.int32)
        self.step_of = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.step_of)

    def refresh(self) -> int:
        """Rebuild over the store's committed episodes now; returns the number of frames."""
        records = self.store.records(reload=True)
        required = [self.store.derived_episode_ids(kind, key) for kind, key in self.filter.require_derived]
        chosen = [
            i for i, r in records.items() if self.filter.accepts(r) and all(i in have for have in required)
        ]
        self._build(chosen, records)
        return len(self)

    def _build(self, episode_ids: list[str], records: dict[str, EpisodeRecord]) -> None:
        episode_parts, step_parts, kept = [], [], []
        for episode_id in episode_ids:
            steps = np.flatnonzero(self.filter.step_mask(records[episode_id])).astype(np.int32)
            if len(steps) == 0:
                continue
            episode_parts.append(np.full(len(steps), len(kept), dtype=np.int32))
            step_parts.append(steps)
            kept.append(episode_id)
        self.episode_ids = kept
        self.records = {i: records[i] for i in kept}
        self.episode_of = np.concatenate(episode_parts) if kept else np.zeros(0, dtype=np.int32)
        self.step_of = np.concatenate(step_parts) if kept else np.zeros(0, dtype=np.int32)

    def key(self, position: int) -> FrameKey:
        return (self.episode_ids[self.episode_of[position]], int(self.step_of[position]))

    def keys(self, positions: np.ndarray) -> list[FrameKey]:
        ids = self.episode_ids
        return [
            (ids[e], int(s)) for e, s in zip(self.episode_of[positions], self.step_of[positions], strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"filter": self.filter.to_dict(), "episode_ids": list(self.episode_ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.filter = EpisodeFilter.from_dict(state["filter"])
        records = self.store.records(reload=True)
        missing = [i for i in state["episode_ids"] if i not in records]
        if missing:
            raise KeyError(f"{len(missing)} indexed episodes are no longer committed, e.g. {missing[:3]}")
        self._build(list(state["episode_ids"]), records)


class FrameSampler:
    """Yields frame keys for a DataLoader (``sampler=``); an epoch is one pass over the index.

    Shuffled epochs are permutations drawn from (seed, epoch), so ``state_dict`` is a handful of integers plus
    the index. ``refresh_each_epoch`` folds newly committed episodes in at every epoch boundary.
    """

    def __init__(
        self,
        index: FrameIndex,
        *,
        shuffle: bool = True,
        seed: int = 0,
        refresh_each_epoch: bool = True,
        samples_per_epoch: int | None = None,
    ) -> None:
        self.index = index
        self.shuffle = shuffle
        self.seed = int(seed)
        self.refresh_each_epoch = refresh_each_epoch
        self.samples_per_epoch = samples_per_epoch
        self.epoch = 0
        self.cursor = 0
        self._started = False
        self._resumed = False
        if len(index) == 0 and not refresh_each_epoch:
            index.refresh()

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.index)

    def _order(self) -> np.ndarray:
        n = len(self.index)
        want = self.samples_per_epoch or n
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng = np.random.default_rng((self.seed, self.epoch))
        if not self.shuffle:
            return np.arange(want) % n
        reps = -(-want // n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[:want]

    def __iter__(self) -> Iterator[FrameKey]:
        if self._resumed:
            self._resumed = False
        else:
            # A new pass is a new epoch even when the previous one was abandoned half way.
            if self._started:
                self.epoch += 1
            if self.refresh_each_epoch:
                self.index.refresh()
            self.cursor = 0
        self._started = True
        order = self._order()
        while self.cursor < len(order):
            position = order[self.cursor]
            self.cursor += 1
            yield self.index.key(position)

    def state_dict(self) -> dict[str, Any]:
        """Keys handed out so far in this epoch; with DataLoader prefetching this runs slightly ahead of
        what the learner consumed, so a resume skips at most the prefetched batches."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "shuffle": self.shuffle,
            "samples_per_epoch": self.samples_per_epoch,
            "index": self.index.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self.shuffle = bool(state["shuffle"])
        self.samples_per_epoch = state["samples_per_epoch"]
        self.index.load_state_dict(state["index"])
        self._started = True
        self._resumed = True
