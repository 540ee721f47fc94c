"""Usage totals of the simulator, overall and per provider.

Every completed call is recorded with its four kinds of tokens and its cost;
:meth:`UsageStats.snapshot` gives the JSON that ``GET /stats`` returns.
``cache_hit_share`` is the share of all prompt tokens (uncached + read +
written) that were read from the cache: the figure a warm prompt cache moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallUsage", "UsageStats", "UsageTotals"]

PROVIDERS = ("openai", "anthropic")


@dataclass(frozen=True)
class CallUsage:
    """Tokens and cost of one completed call.

    Attributes:
        provider: ``"openai"`` or ``"anthropic"``.
        model: the requested model.
        input_tokens: uncached prompt tokens.
        cache_read_tokens: prompt tokens read from the cache.
        cache_write_tokens: prompt tokens written to the cache.
        output_tokens: generated tokens.
        cost_usd: the call's price in dollars.
    """

    provider: str
    model: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass
class UsageTotals:
    """Running sums over calls (and failed requests)."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, call: CallUsage) -> None:
        """Count one completed call."""
        self.requests += 1
        self.input_tokens += call.input_tokens
        self.cache_read_tokens += call.cache_read_tokens
        self.cache_write_tokens += call.cache_write_tokens
        self.output_tokens += call.output_tokens
        self.cost_usd += call.cost_usd

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens: uncached, read and written."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_hit_share(self) -> float:
        """Share of prompt tokens read from the cache (0.0 with no prompt tokens)."""
        prompt = self.prompt_tokens
        return self.cache_read_tokens / prompt if prompt else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the totals and the derived figures."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cost_usd": round(self.cost_usd, 9),
            "cache_hit_share": self.cache_hit_share,
        }


@dataclass
class UsageStats:
    """Totals overall and per provider. Not thread-safe: the simulator locks around it."""

    total: UsageTotals = field(default_factory=UsageTotals)
    by_provider: dict[str, UsageTotals] = field(
        default_factory=lambda: {name: UsageTotals() for name in PROVIDERS}
    )

    def record(self, call: CallUsage) -> None:
        """Count a completed call."""
        self.total.add(call)
        self.by_provider.setdefault(call.provider, UsageTotals()).add(call)

    def record_error(self, provider: str) -> None:
        """Count a request answered with an error (fault, auth, bad request)."""
        self.total.errors += 1
        self.by_provider.setdefault(provider, UsageTotals()).errors += 1

    def reset(self) -> None:
        """Start counting from zero."""
        self.total = UsageTotals()
        self.by_provider = {name: UsageTotals() for name in PROVIDERS}

    def snapshot(self) -> dict[str, Any]:
        """``{"total": {...}, "providers": {"openai": {...}, "anthropic": {...}}}``."""
        return {
            "total": self.total.as_dict(),
            "providers": {name: totals.as_dict() for name, totals in self.by_provider.items()},
        }
