"""Price lookup, per-call cost arithmetic and the usage totals."""

from __future__ import annotations

import pytest

from agent.providers.pricing import DEFAULT_PRICE, ModelPrice, call_cost, price_for
from agent.simulator.stats import CallUsage, UsageStats
from cluster.errors import ConfigError


def test_longest_prefix_wins_and_unknown_models_get_the_default() -> None:
    assert price_for("gpt-4o-mini-2024-07-18") == ModelPrice(0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06") == ModelPrice(2.50, 10.00)
    assert price_for("claude-opus-4-1-20250805") == ModelPrice(15.00, 75.00)
    assert price_for("claude-opus-4-6") == ModelPrice(5.00, 25.00)
    assert price_for("my-local-model") == DEFAULT_PRICE


def test_anthropic_cost_bills_writes_at_125_and_reads_at_10_percent() -> None:
    prices = {"m": ModelPrice(input_per_mtok=10.0, output_per_mtok=50.0)}
    cost = call_cost(
        "anthropic",
        "m",
        input_tokens=1_000_000,
        cache_read_tokens=2_000_000,
        cache_write_tokens=4_000_000,
        output_tokens=100_000,
        prices=prices,
    )
    # 1M x $10 + 2M x $1 + 4M x $12.5 + 0.1M x $50
    assert cost == pytest.approx(10 + 2 + 50 + 5)


def test_openai_cost_bills_cached_input_at_10_percent() -> None:
    prices = {"m": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)}
    cost = call_cost(
        "openai",
        "m",
        input_tokens=500_000,
        cache_read_tokens=1_500_000,
        cache_write_tokens=0,
        output_tokens=250_000,
        prices=prices,
    )
    assert cost == pytest.approx(0.5 * 2 + 1.5 * 0.2 + 0.25 * 8)


def test_a_cached_prefix_costs_a_tenth_of_an_uncached_one() -> None:
    cold = call_cost(
        "openai",
        "gpt-4o",
        input_tokens=10_000,
        cache_read_tokens=0,
        cache_write_tokens=0,
        output_tokens=0,
    )
    warm = call_cost(
        "openai",
        "gpt-4o",
        input_tokens=0,
        cache_read_tokens=10_000,
        cache_write_tokens=0,
        output_tokens=0,
    )
    assert warm == pytest.approx(cold / 10)


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown provider"):
        call_cost(
            "bard", "m", input_tokens=1, cache_read_tokens=0, cache_write_tokens=0, output_tokens=0
        )


def test_stats_totals_per_provider_and_hit_share() -> None:
    stats = UsageStats()
    stats.record(CallUsage("openai", "gpt-4o", 100, 300, 0, 10, 0.5))
    stats.record(CallUsage("anthropic", "claude", 50, 0, 150, 20, 0.25))
    stats.record_error("anthropic")
    snap = stats.snapshot()
    assert snap["total"]["requests"] == 2 and snap["total"]["errors"] == 1
    assert snap["total"]["cost_usd"] == pytest.approx(0.75)
    assert snap["total"]["cache_hit_share"] == pytest.approx(300 / 600)
    assert snap["providers"]["openai"]["cache_hit_share"] == pytest.approx(0.75)
    assert snap["providers"]["anthropic"] == {
        "requests": 1,
        "errors": 1,
        "input_tokens": 50,
        "cache_read_tokens": 0,
        "cache_write_tokens": 150,
        "output_tokens": 20,
        "prompt_tokens": 200,
        "cost_usd": 0.25,
        "cache_hit_share": 0.0,
    }
    stats.reset()
    assert stats.snapshot()["total"]["requests"] == 0
    assert stats.snapshot()["total"]["cache_hit_share"] == 0.0
