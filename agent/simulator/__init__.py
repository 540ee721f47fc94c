"""The provider simulator and the deterministic reply policy.

A local HTTP server that speaks the OpenAI Chat Completions and Anthropic
Messages wire formats well enough for the official SDKs, simulating prompt
caching, pricing, latency and faults (:class:`ProviderSimulator`,
:func:`serve`), and the reply policy it shares with the offline provider
(:func:`decide_reply`).
"""

from __future__ import annotations

from agent.simulator.faults import Fault
from agent.simulator.policy import PolicyReply, decide_reply
from agent.simulator.pricing import MODEL_PRICES, ModelPrice, call_cost, price_for
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
    "MODEL_PRICES",
    "AnthropicCacheUsage",
    "Fault",
    "ModelPrice",
    "OpenAICacheUsage",
    "PolicyReply",
    "PromptBlock",
    "PromptCache",
    "ProviderSimulator",
    "RecordedRequest",
    "TokenizedPrompt",
    "call_cost",
    "cache_partition",
    "count_tokens",
    "decide_reply",
    "price_for",
    "serve",
    "tokenize",
]
