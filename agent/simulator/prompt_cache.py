"""Prompt caching as OpenAI and Anthropic document it, with an injected clock.

Pure bookkeeping, no I/O and no locks (the simulator serializes calls): the
cache maps prompt-prefix digests to an expiry time, per *partition*
(sha256 of the api key + model, so neither two keys nor two models ever share
an entry, and the raw key is never kept).

OpenAI (automatic caching): every request caches its whole prompt in steps of
``openai_step`` tokens (128) starting at ``openai_min_tokens`` (1,024); the
cached part of a request is the longest such prefix seen before, so
``cached_tokens`` is 0 or 1024 + k*128.

Anthropic (explicit caching): only prefixes ending at a ``cache_control``
breakpoint are written, and only when they are at least
``anthropic_min_tokens`` long. For each breakpoint the cache also checks the
earlier block boundaries, up to ``anthropic_lookback_blocks`` (20) blocks back,
and the longest hit over all breakpoints is read. The tokens from the read
point up to the last breakpoint are written (``cache_creation_input_tokens``);
the tokens after the last breakpoint are plain ``input_tokens``.

Entries live ``ttl`` seconds (300) and every hit or write refreshes them.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.simulator.tokens import TokenizedPrompt
from cluster.errors import ConfigError

__all__ = [
    "AnthropicCacheUsage",
    "OpenAICacheUsage",
    "PromptCache",
    "cache_partition",
]


def cache_partition(api_key: str, model: str) -> str:
    """The cache partition of a request: a digest of the api key, and the model.

    Args:
        api_key: the full api key (only its SHA-256 is kept).
        model: the requested model name.

    Returns:
        ``"<sha256 hex of the key>:<model>"``.
    """
    return f"{hashlib.sha256(api_key.encode('utf-8')).hexdigest()}:{model}"


@dataclass(frozen=True)
class OpenAICacheUsage:
    """Prompt token usage of one OpenAI request.

    Attributes:
        prompt_tokens: all prompt tokens, cached ones included.
        cached_tokens: the tokens read from the cache.
    """

    prompt_tokens: int
    cached_tokens: int

    @property
    def uncached_tokens(self) -> int:
        """Prompt tokens billed at the full input price."""
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True)
class AnthropicCacheUsage:
    """Prompt token usage of one Anthropic request, in the three kinds it reports.

    Attributes:
        input_tokens: tokens after the last breakpoint (neither read nor written).
        cache_read_input_tokens: tokens read from the cache.
        cache_creation_input_tokens: tokens written to the cache.
    """

    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens of the request."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


class PromptCache:
    """The prompt caches of both providers, keyed by partition and prefix digest.

    Args:
        ttl: seconds an entry lives after its last write or hit.
        clock: monotonic time source (inject a fake one in tests).
        openai_min_tokens: shortest prompt prefix OpenAI caches.
        openai_step: OpenAI caches prefixes in steps of this many tokens.
        anthropic_min_tokens: shortest prefix an Anthropic breakpoint caches.
        anthropic_lookback_blocks: how many block boundaries before a breakpoint
            Anthropic also checks for a hit.
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        openai_min_tokens: int = 1024,
        openai_step: int = 128,
        anthropic_min_tokens: int = 1024,
        anthropic_lookback_blocks: int = 20,
    ) -> None:
        if ttl <= 0 or openai_min_tokens < 1 or openai_step < 1 or anthropic_min_tokens < 1:
            raise ConfigError(
                "PromptCache needs ttl > 0 and token minimums/steps >= 1, got "
                f"ttl={ttl}, openai_min_tokens={openai_min_tokens}, openai_step={openai_step}, "
                f"anthropic_min_tokens={anthropic_min_tokens}"
            )
        self.ttl = ttl
        self.openai_min_tokens = openai_min_tokens
        self.openai_step = openai_step
        self.anthropic_min_tokens = anthropic_min_tokens
        self.anthropic_lookback_blocks = max(0, anthropic_lookback_blocks)
        self._clock = clock
        # Ordered by expiry: the TTL is the same for every entry, so moving an
        # entry to the end on every write or hit keeps the soonest-expiring first.
        self._entries: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def openai(self, partition: str, prompt: TokenizedPrompt) -> OpenAICacheUsage:
        """Look up and then cache an OpenAI prompt (automatic prefix caching).

        Args:
            partition: from :func:`cache_partition`.
            prompt: the request's prompt (tools, then each message).

        Returns:
            The prompt tokens and how many of them were read from the cache.
        """
        now = self._clock()
        self._purge(now)
        total = prompt.total_tokens
        checkpoints = list(range(self.openai_min_tokens, total + 1, self.openai_step))
        digests = prompt.token_prefix_digests(checkpoints)
        cached = 0
        for n in reversed(checkpoints):
            if ("openai", partition, digests[n]) in self._entries:
                cached = n
                break
        for n in checkpoints:
            self._touch(("openai", partition, digests[n]), now)
        return OpenAICacheUsage(prompt_tokens=total, cached_tokens=cached)

    def anthropic(self, partition: str, prompt: TokenizedPrompt) -> AnthropicCacheUsage:
        """Look up and then write an Anthropic prompt's ``cache_control`` breakpoints.

        Args:
            partition: from :func:`cache_partition`.
            prompt: the request's prompt (tools, system blocks, then each
                message content block), breakpoints marked on its blocks.

        Returns:
            The three kinds of prompt tokens Anthropic reports.
        """
        now = self._clock()
        self._purge(now)
        breakpoints = prompt.breakpoints
        if not breakpoints:
            return AnthropicCacheUsage(prompt.total_tokens, 0, 0)
        digests = prompt.block_prefix_digests()
        ends = prompt.block_ends
        read_block = -1
        for bp in breakpoints:
            for i in range(bp, max(-1, bp - self.anthropic_lookback_blocks - 1), -1):
                if i <= read_block:
                    break
                if ("anthropic", partition, digests[i]) in self._entries:
                    read_block = i
                    break
        read = ends[read_block] if read_block >= 0 else 0
        if read_block >= 0:
            self._touch(("anthropic", partition, digests[read_block]), now)
        written_to = read
        for bp in breakpoints:
            if ends[bp] >= self.anthropic_min_tokens:
                self._touch(("anthropic", partition, digests[bp]), now)
                written_to = max(written_to, ends[bp])
        creation = written_to - read
        return AnthropicCacheUsage(
            input_tokens=prompt.total_tokens - read - creation,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=creation,
        )

    def _touch(self, key: tuple[str, str, str], now: float) -> None:
        self._entries[key] = now + self.ttl
        self._entries.move_to_end(key)

    def _purge(self, now: float) -> None:
        while self._entries:
            key, expires = next(iter(self._entries.items()))
            if expires > now:
                return
            del self._entries[key]
