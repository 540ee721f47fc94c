"""The neutral conversation format and the result of a turn.

Messages are plain dicts in an OpenAI-chat-like shape (see
docs/architecture.md) so that the session store can msgpack them and every
provider can translate them to its wire format:

- ``{"role": "user", "content": str}``
- ``{"role": "assistant", "content": str | None, "tool_calls": [{"id", "name", "arguments"}]}``
- ``{"role": "tool", "tool_call_id": str, "name": str, "content": str}``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


def user_message(text: str) -> Message:
    """A user message in the neutral format."""
    return {"role": "user", "content": text}


def assistant_message(text: str | None, tool_calls: list[dict[str, Any]] | None = None) -> Message:
    """An assistant message; ``tool_calls`` items are ``{"id", "name", "arguments"}``."""
    message: Message = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool_message(tool_call_id: str, name: str, content: str) -> Message:
    """The result of one tool call, sent back to the model."""
    return {"role": "tool", "tool_call_id": tool_call_id, "name": name, "content": content}


@dataclass
class Usage:
    """Token usage of one or more model calls, in the providers' four kinds."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    api_calls: int = 0

    def add(self, other: Usage) -> None:
        """Accumulate ``other`` into this usage."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.api_calls += other.api_calls

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens: uncached, read from cache and written to cache."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def as_dict(self) -> dict[str, int]:
        """A plain, msgpack-safe dict."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "api_calls": self.api_calls,
        }


@dataclass
class TurnResult:
    """What one ``run_conversation`` call produced.

    Attributes:
        text: the final assistant text (or a note saying why there is none).
        new_messages: the messages this turn added (user, assistant, tool), to commit.
        usage: token usage summed over the turn's model calls.
        interrupted: True when the turn stopped early on ``interrupt()`` or the watchdog.
        interrupt_reason: why it was interrupted, if it was.
        iterations: how many model calls the tool loop made.
        compressed: how many earlier messages a compression at the start of the
            turn replaced with a summary (0: none; the summary then leads ``new_messages``).
    """

    text: str
    new_messages: list[Message] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    interrupted: bool = False
    interrupt_reason: str | None = None
    iterations: int = 0
    compressed: int = 0

    @property
    def api_calls(self) -> int:
        """Model calls made during the turn."""
        return self.usage.api_calls
