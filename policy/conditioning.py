"""RECAP conditioning shared by every policy: the advantage indicator, its dropout, classifier-free guidance,
and the text form used by language-conditioned policies (pi0, smolvla).

The indicator is an integer token: 0 negative, 1 positive, 2 dropped (unconditional). Dropping it for a
fraction of training frames trains the unconditional policy inside the same network, which is what guidance
needs at deployment.
"""

from __future__ import annotations

import torch

NEGATIVE = 0
POSITIVE = 1
DROPPED = 2
NUM_INDICATOR_TOKENS = 3
TOKEN_OF = {"negative": NEGATIVE, "positive": POSITIVE, "dropped": DROPPED}
# As a scalar state feature (LeRobot policies): positive +1, negative -1, dropped 0.
SIGNED_FEATURE = (-1.0, 1.0, 0.0)


def indicator_tokens(indicators: torch.Tensor) -> torch.Tensor:
    """Bool/0-1 indicators -> long tokens (1 positive, 0 negative)."""
    return indicators.to(torch.long).clamp(0, 1)


def drop_indicators(
    tokens: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each token by DROPPED with probability ``rate`` (independently per frame)."""
    if rate <= 0.0:
        return tokens
    dropped = torch.rand(tokens.shape, generator=generator, device=tokens.device) < rate
    return torch.where(dropped, torch.full_like(tokens, DROPPED), tokens)


def signed_indicator_feature(tokens: torch.Tensor) -> torch.Tensor:
    """(B,) tokens -> (B, 1) float feature: +1 positive, -1 negative, 0 dropped."""
    table = torch.tensor(SIGNED_FEATURE, dtype=torch.float32, device=tokens.device)
    return table[tokens].unsqueeze(-1)


def classifier_free_guidance(
    conditional: torch.Tensor, unconditional: torch.Tensor, beta: float
) -> torch.Tensor:
    """v = v_uncond + beta (v_cond - v_uncond): beta 1 is the conditional model, 0 the unconditional one."""
    return unconditional + beta * (conditional - unconditional)


def advantage_prompt(task: str, token: int) -> str:
    """The task string a language policy sees: RECAP appends "Advantage: positive|negative"; dropped adds none."""
    if token == DROPPED:
        return task
    if token not in (NEGATIVE, POSITIVE):
        raise ValueError(f"indicator token must be 0, 1 or 2, got {token}")
    word = "positive" if token == POSITIVE else "negative"
    separator = "" if not task or task.endswith("\n") else "\n"
    return f"{task}{separator}Advantage: {word}"
