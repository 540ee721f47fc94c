"""A deterministic approximate tokenizer and the tokenized prompt the cache keys on.

Real providers use BPE vocabularies; the simulator only needs counts of the
right order of magnitude (about one token per short word or four letters, one
per punctuation mark) and, above all, *prefix stability*: the prompt is
tokenized block by block in the order the provider reads it (tools, system,
then each message or content block), so appending a message only appends
tokens and never changes the ones before it. The token split is lossless:
joining the tokens of a text gives the text back, so two prompts share a token
prefix exactly when they share the text of those blocks byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PromptBlock", "TokenizedPrompt", "count_tokens", "tokenize"]

# Leading whitespace belongs to the token after it (as in BPE vocabularies);
# words are cut into pieces of at most four characters; trailing whitespace is
# a token of its own.
_TOKEN_RE = re.compile(r"\s*(?:\w{1,4}|[^\w\s])|\s+")

# A length prefix that no token can have marks the start of each block in the
# prefix hashes, so "ab" + "c" and "a" + "bc" never collide.
_BLOCK_MARK = b"\xff\xff\xff\xff"


def tokenize(text: str) -> list[str]:
    """Split ``text`` into approximate tokens; ``"".join(tokenize(t)) == t``."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """The number of approximate tokens in ``text``."""
    return len(tokenize(text))


@dataclass(frozen=True)
class PromptBlock:
    """One unit of a prompt as the provider reads it.

    Attributes:
        text: the block rendered to text (tool schema, system text, message or
            content block); any cache marker is left out of the text, so moving
            a breakpoint does not change the prefix.
        cache_breakpoint: whether the request put a cache breakpoint
            (Anthropic ``cache_control``) on this block.
    """

    text: str
    cache_breakpoint: bool = False


class TokenizedPrompt:
    """A prompt tokenized block by block, with stable hashes of its prefixes.

    Args:
        blocks: the prompt's blocks in the order the provider reads them.
    """

    def __init__(self, blocks: Sequence[PromptBlock]) -> None:
        self.blocks: tuple[PromptBlock, ...] = tuple(blocks)
        self._block_tokens: list[list[str]] = [tokenize(block.text) for block in self.blocks]
        ends: list[int] = []
        total = 0
        for tokens in self._block_tokens:
            total += len(tokens)
            ends.append(total)
        self.block_ends: tuple[int, ...] = tuple(ends)
        """Cumulative token count at the end of each block."""
        self.total_tokens: int = total
        """Number of tokens of the whole prompt."""

    @property
    def breakpoints(self) -> list[int]:
        """Indices of the blocks that carry a cache breakpoint, in order."""
        return [i for i, block in enumerate(self.blocks) if block.cache_breakpoint]

    def block_prefix_digests(self) -> list[str]:
        """Digest of the prompt up to and including each block (index-aligned with blocks)."""
        digests: list[str] = []
        hasher = hashlib.sha256()
        for tokens in self._block_tokens:
            self._feed_block(hasher, tokens)
            digests.append(hasher.hexdigest())
        return digests

    def token_prefix_digests(self, positions: Iterable[int]) -> dict[int, str]:
        """Digests of the first ``n`` tokens, for each ``n`` in ``positions``.

        A digest depends on the tokens and on where blocks start among them, so
        it is equal for two prompts exactly when their first ``n`` tokens are.

        Args:
            positions: token counts between 0 and ``total_tokens``.

        Returns:
            ``{n: digest}`` for every requested ``n``.
        """
        wanted = sorted({n for n in positions if 0 <= n <= self.total_tokens})
        digests: dict[int, str] = {}
        hasher = hashlib.sha256()
        seen = 0
        pending = iter(wanted)
        target = next(pending, None)
        if target == 0:
            digests[0] = hasher.hexdigest()
            target = next(pending, None)
        for tokens in self._block_tokens:
            if target is None:
                break
            hasher.update(_BLOCK_MARK)
            for token in tokens:
                _feed_token(hasher, token)
                seen += 1
                if seen == target:
                    digests[seen] = hasher.hexdigest()
                    target = next(pending, None)
                    if target is None:
                        break
        return digests

    @staticmethod
    def _feed_block(hasher: hashlib._Hash, tokens: list[str]) -> None:
        hasher.update(_BLOCK_MARK)
        for token in tokens:
            _feed_token(hasher, token)


def _feed_token(hasher: hashlib._Hash, token: str) -> None:
    data = token.encode("utf-8")
    hasher.update(len(data).to_bytes(4, "big"))
    hasher.update(data)
