"""Fixed evaluation seeds, intervals, paired comparisons and the promotion gate."""

from __future__ import annotations

import pytest
from scipy import stats

from improve.evaluation import (
    GateConfig,
    evaluation_seeds,
    paired_comparison,
    promote,
    success_interval,
)


def outcomes(successes: list[int], base: int = 100) -> dict[str, int]:
    return {str(base + k): int(s) for k, s in enumerate(successes)}


def test_evaluation_seeds_are_the_same_for_every_call_and_need_a_size():
    assert evaluation_seeds(7, 3) == [7, 8, 9] == evaluation_seeds(7, 3)
    with pytest.raises(ValueError, match="eval_episodes"):
        evaluation_seeds(7, 0)


def test_success_interval_is_wilsons_and_within_ten_points_at_the_default_size():
    low, high = success_interval(50, 100)
    ci = stats.binomtest(50, 100).proportion_ci(method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert high - 0.5 <= 0.10 and 0.5 - low <= 0.10
    assert success_interval(0, 10)[0] == 0.0 and success_interval(0, 10)[1] > 0.2


def test_paired_comparison_counts_the_seeds_where_the_two_disagree():
    reference = outcomes([1, 1, 0, 0, 1, 0])
    candidate = outcomes([1, 0, 1, 1, 1, 1])
    c = paired_comparison(reference, candidate)
    assert (c.seeds, c.candidate_only, c.reference_only) == (6, 3, 1)
    assert c.difference == pytest.approx(2 / 6)
    assert c.p_value == pytest.approx(stats.binomtest(3, 4).pvalue)
    assert c.ci_low < c.difference < c.ci_high


def test_paired_comparison_uses_common_seeds_only_and_refuses_disjoint_ones():
    c = paired_comparison(outcomes([1, 1]), outcomes([0, 0, 0]))
    assert c.seeds == 2
    with pytest.raises(ValueError, match="share no seed"):
        paired_comparison(outcomes([1], base=0), outcomes([1], base=5))


def test_the_gate_keeps_the_incumbent_when_a_broken_policy_is_offered():
    incumbent = outcomes([1] * 40 + [0] * 60)
    broken = outcomes([0] * 100)
    comparison = paired_comparison(incumbent, broken)
    assert comparison.p_worse < 1e-6
    assert not promote(GateConfig(), comparison)
    assert not promote(GateConfig(rule="point", margin=0.05), comparison)
    assert promote(GateConfig(rule="always"), comparison)


def test_the_gate_promotes_a_first_policy_an_equal_one_and_noise_within_the_margin():
    assert promote(GateConfig(), None)
    same = outcomes([1] * 30 + [0] * 70)
    assert promote(GateConfig(), paired_comparison(same, same))
    # Two seeds worse out of 100 is not significant.
    slightly_worse = outcomes([1] * 28 + [0] * 72)
    assert promote(GateConfig(), paired_comparison(same, slightly_worse))
    # Significantly worse but by less than the margin: still promoted.
    worse = outcomes([0] * 10 + [1] * 20 + [0] * 70)
    assert not promote(GateConfig(), paired_comparison(same, worse))
    assert promote(GateConfig(margin=0.15), paired_comparison(same, worse))


@pytest.mark.parametrize(
    "fields, message",
    [({"rule": "best"}, "loop.gate.rule"), ({"margin": 1.5}, "margin"), ({"alpha": 0.0}, "alpha")],
)
def test_a_bad_gate_config_names_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**fields)


class _Record:
    def __init__(self, seed):
        self.meta = type("Meta", (), {"seed": seed})()


def test_training_seeds_never_repeat_after_a_restart_and_evaluation_reruns_only_missing_seeds():
    from improve.collection import seeds_to_collect

    # Arms finished out of order before a crash: seeds 0, 1, 2 and 4 of 0-19 are committed.
    committed = [_Record(s) for s in (100, 101, 102, 104)]
    todo = seeds_to_collect(committed, target=20, seed_base=100, attempt=0)
    assert len(todo) == 16 and min(todo) == 105 and not {100, 101, 102, 104} & set(todo)
    assert min(seeds_to_collect(committed, 20, 100, attempt=1)) == 100 + 10_000
    assert seeds_to_collect([], 3, 100, 0) == [100, 101, 102]
    fixed = [7, 8, 9, 10]
    assert seeds_to_collect([_Record(8), _Record(10)], 4, 0, 3, seeds=fixed) == [7, 9]


def test_a_seed_whose_episode_was_started_but_never_committed_is_not_drawn_again(tmp_path):
    import numpy as np

    from improve.collection import seeds_to_collect, started_seeds
    from learners.value_data import synthetic_store_schema
    from replay import ReplayStore

    store = ReplayStore.create(str(tmp_path / "store"), synthetic_store_schema(image_size=32))

    def start(arm: str, round: int, seed: int):
        writer = store.episode_writer(
            robot_id=arm, round=round, policy_version="p", task="synthetic", purpose="rollout", seed=seed
        )
        image = np.zeros((32, 32, 3), np.uint8)
        for t in range(3):
            writer.add_step(
                {"front": image, "wrist": image}, np.zeros(6, np.float32), np.zeros(1, np.float32), t / 10
            )
        return writer

    # An arm died mid-episode on seed 105 of round 2's rollouts (its writer's heartbeat names it), and another was
    # still writing seed 106 of round 1 when the driver was killed.
    start("arm0", 2, 105).abort("arm died")
    writing = start("arm1", 1, 106)
    reopened = ReplayStore.open(store.location.url)
    assert started_seeds(reopened, 2, "rollout") == {105}
    assert started_seeds(reopened, 2, "demo") == set() and started_seeds(reopened, 1, "rollout") == {106}

    committed = [_Record(s) for s in (100, 101, 102, 104)]
    todo = seeds_to_collect(committed, target=6, seed_base=100, attempt=0, started={105})
    assert todo == [106, 107], "the torn seed 105 is never replayed"
    # Evaluation reruns exactly its fixed seeds, torn or not.
    assert seeds_to_collect([], 2, 0, 0, seeds=[105, 106], started={105}) == [105, 106]
    # Set apart with `vivarl-replay verify --quarantine`, the torn episode's seed still counts as drawn.
    aborted = [e.episode_id for e in reopened.in_flight() if e.status == "aborted"]
    assert reopened.quarantine_torn() == aborted and len(aborted) == 1
    assert reopened.in_flight()[0].seed == 106 and len(reopened.in_flight()) == 1
    assert started_seeds(reopened, 2, "rollout") == {105}
    assert list(reopened.quarantined().values())[0]["reason"] == "aborted"
    # A marker that does not name the seed (set apart before markers did): the writer's heartbeat still does.
    older = start("arm0", 2, 107)
    older.abort("arm died")
    reopened.location.quarantine(older.episode_id, {"reason": "aborted"})
    assert started_seeds(reopened, 2, "rollout") == {105, 107}
    writing.abort("test over")
