"""Per-model prices and the cost of one simulated call.

Prices are US dollars per million tokens, list prices of the providers' public
pages at the time of writing (close enough for comparing cache strategies; the
simulator is not a bill). A model is matched by the longest table entry its
name starts with, so dated snapshots (``claude-sonnet-4-5-20250929``,
``gpt-4o-2024-08-06``) find their family; unknown models use
:data:`DEFAULT_PRICE`.

Cache multipliers, applied to the model's base input price:

- Anthropic: a cache write (5-minute TTL) costs 1.25x, a cache read 0.1x, as
  Anthropic documents.
- OpenAI: cached input costs 0.1x and writes cost nothing extra. OpenAI's real
  discount depends on the model (0.5x for gpt-4o, 0.25x for gpt-4.1, 0.1x for
  the gpt-5 family); the simulator uses one factor for every model so that
  figures of the two providers compare on the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.errors import ConfigError

__all__ = [
    "ANTHROPIC_CACHE_READ_MULTIPLIER",
    "ANTHROPIC_CACHE_WRITE_MULTIPLIER",
    "DEFAULT_PRICE",
    "MODEL_PRICES",
    "OPENAI_CACHED_INPUT_MULTIPLIER",
    "ModelPrice",
    "call_cost",
    "price_for",
]

ANTHROPIC_CACHE_WRITE_MULTIPLIER = 1.25
ANTHROPIC_CACHE_READ_MULTIPLIER = 0.1
OPENAI_CACHED_INPUT_MULTIPLIER = 0.1

_PER_TOKEN = 1 / 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """List price of a model.

    Attributes:
        input_per_mtok: dollars per million uncached input tokens.
        output_per_mtok: dollars per million output tokens.
    """

    input_per_mtok: float
    output_per_mtok: float


MODEL_PRICES: dict[str, ModelPrice] = {
    # OpenAI
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-5": ModelPrice(1.25, 10.00),
    "gpt-5-mini": ModelPrice(0.25, 2.00),
    "gpt-5-nano": ModelPrice(0.05, 0.40),
    "o3": ModelPrice(2.00, 8.00),
    "o4-mini": ModelPrice(1.10, 4.40),
    # Anthropic
    "claude-opus-4": ModelPrice(5.00, 25.00),  # Opus 4.5 and later
    "claude-opus-4-0": ModelPrice(15.00, 75.00),
    "claude-opus-4-1": ModelPrice(15.00, 75.00),
    "claude-opus-4-20250514": ModelPrice(15.00, 75.00),
    "claude-sonnet-4": ModelPrice(3.00, 15.00),
    "claude-3-7-sonnet": ModelPrice(3.00, 15.00),
    "claude-3-5-sonnet": ModelPrice(3.00, 15.00),
    "claude-haiku-4-5": ModelPrice(1.00, 5.00),
    "claude-3-5-haiku": ModelPrice(0.80, 4.00),
    "claude-3-haiku": ModelPrice(0.25, 1.25),
}
"""Known models, by name prefix."""

DEFAULT_PRICE = ModelPrice(3.00, 15.00)
"""Price of any model the table does not know."""


def price_for(model: str, prices: dict[str, ModelPrice] | None = None) -> ModelPrice:
    """The price of ``model``: the longest table entry its name starts with, else the default.

    Args:
        model: the model name as sent in the request.
        prices: a price table to use instead of :data:`MODEL_PRICES`.

    Returns:
        The model's price.
    """
    table = MODEL_PRICES if prices is None else prices
    best: str | None = None
    for name in table:
        if model.startswith(name) and (best is None or len(name) > len(best)):
            best = name
    return table[best] if best is not None else DEFAULT_PRICE


def call_cost(
    provider: str,
    model: str,
    *,
    input_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    output_tokens: int,
    prices: dict[str, ModelPrice] | None = None,
) -> float:
    """The cost in dollars of one call.

    Args:
        provider: ``"openai"`` or ``"anthropic"`` (decides the cache multipliers).
        model: the model name.
        input_tokens: uncached prompt tokens (neither read from nor written to cache).
        cache_read_tokens: prompt tokens read from the cache.
        cache_write_tokens: prompt tokens written to the cache (Anthropic only;
            OpenAI never reports writes).
        output_tokens: generated tokens.
        prices: a price table to use instead of :data:`MODEL_PRICES`.

    Returns:
        Dollars.

    Raises:
        ConfigError: for an unknown provider.
    """
    price = price_for(model, prices)
    if provider == "anthropic":
        read_factor = ANTHROPIC_CACHE_READ_MULTIPLIER
        write_factor = ANTHROPIC_CACHE_WRITE_MULTIPLIER
    elif provider == "openai":
        read_factor = OPENAI_CACHED_INPUT_MULTIPLIER
        write_factor = 1.0
    else:
        raise ConfigError(f"unknown provider {provider!r}; expected 'openai' or 'anthropic'")
    prompt_units = (
        input_tokens + cache_read_tokens * read_factor + cache_write_tokens * write_factor
    )
    return (
        prompt_units * price.input_per_mtok + output_tokens * price.output_per_mtok
    ) * _PER_TOKEN
