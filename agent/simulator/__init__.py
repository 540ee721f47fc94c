"""The provider simulator: a local OpenAI and Anthropic endpoint for tests, demos and benchmarks.

A local HTTP server that speaks the OpenAI Chat Completions and Anthropic
Messages wire formats well enough for the official SDKs, simulating prompt
caching, pricing, latency and faults (:class:`ProviderSimulator`,
:func:`serve`). The reply policy it shares with the offline provider and the
prices it bills live beside the providers (``agent/providers/reply_policy.py``,
``agent/providers/pricing.py``).
"""

from __future__ import annotations

from agent.simulator.faults import Fault
from agent.simulator.prompt_cache import (
    AnthropicCacheUsage,
    OpenAICacheUsage,
    PromptCache,
    cache_partition,
)
from agent.simulator.recording import RecordedRequest
from agent.simulator.server import ProviderSimulator, serve
from agent.simulator.tokens import PromptBlock, TokenizedPrompt, count_tokens, tokenize

__all__ = [
    "AnthropicCacheUsage",
    "Fault",
    "OpenAICacheUsage",
    "PromptBlock",
    "PromptCache",
    "ProviderSimulator",
    "RecordedRequest",
    "TokenizedPrompt",
    "cache_partition",
    "count_tokens",
    "serve",
    "tokenize",
]
