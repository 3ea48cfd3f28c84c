"""How the loop tells a better policy from noise: fixed evaluation seeds, intervals and paired tests.

Every round evaluates its policy on the same evaluation seeds, so two rounds (or two variants of a study) can be
compared episode by episode. A success rate gets a Wilson interval; two policies evaluated on the same seeds get a
paired comparison: the exact McNemar test on the seeds where they disagree, and an Agresti-Min interval for the
difference. The promotion gate decides from that comparison whether a new policy replaces the deployed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from scipy import stats

GATE_RULES = ("paired_test", "point", "always")


def evaluation_seeds(base: int, count: int) -> list[int]:
    """The fixed evaluation seeds: the same for every round and every variant of a run or study."""
    if count <= 0:
        raise ValueError(f"loop.eval_episodes must be positive, got {count}")
    return list(range(base, base + count))


def success_interval(successes: int, episodes: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (it stays inside [0, 1] and is honest at 0% and 100%)."""
    if episodes <= 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(successes), int(episodes)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class PairedComparison:
    """``candidate`` against ``reference`` on the seeds both were evaluated on."""

    seeds: int
    reference_rate: float
    candidate_rate: float
    difference: float
    ci_low: float
    ci_high: float
    # Seeds only the candidate solved, and seeds only the reference solved.
    candidate_only: int
    reference_only: int
    # Exact McNemar: two-sided, and one-sided for "the candidate is worse".
    p_value: float
    p_worse: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def paired_comparison(
    reference: Mapping[str, int], candidate: Mapping[str, int], confidence: float = 0.95
) -> PairedComparison:
    """Compare two evaluations (seed -> 1 success / 0 not) on their common seeds."""
    common = sorted(set(reference) & set(candidate))
    n = len(common)
    if n == 0:
        raise ValueError("the two evaluations share no seed; evaluate both on loop.eval_seed_base's seeds")
    ref = [int(reference[s]) for s in common]
    cand = [int(candidate[s]) for s in common]
    candidate_only = sum(c and not r for r, c in zip(ref, cand, strict=True))
    reference_only = sum(r and not c for r, c in zip(ref, cand, strict=True))
    discordant = candidate_only + reference_only
    if discordant:
        p_value = stats.binomtest(candidate_only, discordant, 0.5).pvalue
        p_worse = stats.binomtest(candidate_only, discordant, 0.5, alternative="less").pvalue
    else:
        p_value = p_worse = 1.0
    # Agresti-Min: the Wald interval of a paired difference after adding 1/2 to each cell of the 2x2 table.
    b, c, m = candidate_only + 0.5, reference_only + 0.5, n + 2.0
    diff = (b - c) / m
    se = ((b + c) - (b - c) ** 2 / m) ** 0.5 / m
    z = stats.norm.ppf(0.5 + confidence / 2)
    return PairedComparison(
        seeds=n,
        reference_rate=sum(ref) / n,
        candidate_rate=sum(cand) / n,
        difference=(candidate_only - reference_only) / n,
        ci_low=max(-1.0, diff - z * se),
        ci_high=min(1.0, diff + z * se),
        candidate_only=candidate_only,
        reference_only=reference_only,
        p_value=float(p_value),
        p_worse=float(p_worse),
    )


@dataclass
class GateConfig:
    """When a newly trained policy replaces the deployed one (it is evaluated on the fixed seeds first)."""

    # "paired_test": keep the incumbent when the candidate is worse by more than ``margin`` and the one-sided exact
    # McNemar test says so at ``alpha``; "point": keep it when the candidate's rate is more than ``margin`` below;
    # "always": deploy every new policy.
    rule: str = "paired_test"
    margin: float = 0.0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.rule not in GATE_RULES:
            raise ValueError(f"loop.gate.rule must be one of {GATE_RULES}, got {self.rule!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"loop.gate.margin is a success-rate difference in [0, 1), got {self.margin}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"loop.gate.alpha must be in (0, 1), got {self.alpha}")


def promote(gate: GateConfig, comparison: PairedComparison | None) -> bool:
    """True: deploy the candidate. ``comparison`` is candidate against incumbent (None: nothing deployed yet)."""
    if comparison is None or gate.rule == "always":
        return True
    worse_by = -comparison.difference
    if gate.rule == "point":
        return worse_by <= gate.margin
    return not (worse_by > gate.margin and comparison.p_worse < gate.alpha)
