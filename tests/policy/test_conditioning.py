"""Indicator tokens, their dropout rate, the classifier-free-guidance formula and the language-policy prompt."""

from __future__ import annotations

import pytest
import torch

from policy.conditioning import (
    DROPPED,
    NEGATIVE,
    POSITIVE,
    advantage_prompt,
    classifier_free_guidance,
    drop_indicators,
    indicator_tokens,
    signed_indicator_feature,
)


def test_cfg_formula():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 0.0), uncond)
    # beta 2: v_u + 2 (v_c - v_u) = 2 v_c - v_u
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 2.0), torch.tensor([1.5, 1.0]))


def test_dropout_rate_is_the_configured_one():
    tokens = indicator_tokens(torch.rand(200_000) < 0.5)
    dropped = drop_indicators(tokens, 0.3, torch.Generator().manual_seed(0))
    rate = (dropped == DROPPED).float().mean().item()
    assert rate == pytest.approx(0.3, abs=0.005)
    kept = dropped != DROPPED
    assert torch.equal(dropped[kept], tokens[kept])
    assert torch.equal(drop_indicators(tokens, 0.0), tokens)


def test_token_values_and_signed_feature():
    tokens = indicator_tokens(torch.tensor([True, False]))
    assert tokens.tolist() == [POSITIVE, NEGATIVE]
    feature = signed_indicator_feature(torch.tensor([NEGATIVE, POSITIVE, DROPPED]))
    assert feature.squeeze(-1).tolist() == [-1.0, 1.0, 0.0]


def test_advantage_prompt_for_language_policies():
    assert advantage_prompt("fold the box", POSITIVE) == "fold the box\nAdvantage: positive"
    assert advantage_prompt("fold the box", NEGATIVE) == "fold the box\nAdvantage: negative"
    assert advantage_prompt("fold the box", DROPPED) == "fold the box"
    assert advantage_prompt("", POSITIVE) == "Advantage: positive"
    with pytest.raises(ValueError):
        advantage_prompt("x", 7)
