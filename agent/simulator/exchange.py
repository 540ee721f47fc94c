"""What the wire formats hand to the simulator and get back from it.

Each wire module (:mod:`~agent.simulator.openai_wire`,
:mod:`~agent.simulator.anthropic_wire`) turns a request body into a
:class:`ParsedRequest` (neutral messages for the policy, the prompt blocks for
the cache) and renders a :class:`Reply` back, as one JSON body or as a list of
:class:`SseEvent`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from agent.providers.reply_policy import PolicyReply
from agent.simulator.tokens import PromptBlock, TokenizedPrompt, count_tokens, tokenize

__all__ = ["ParsedRequest", "Reply", "SseEvent", "ToolCall", "compact_json", "new_id"]


def compact_json(value: Any) -> str:
    """JSON without spaces, keys in the order given (so byte changes show)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_id(prefix: str) -> str:
    """A fresh id in the provider's style, e.g. ``call_…``, ``msg_…``."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ParsedRequest:
    """A validated chat request, translated to what the simulator needs.

    Attributes:
        provider: ``"openai"`` or ``"anthropic"``.
        model: the requested model.
        messages: the conversation in the neutral format (system prompt excluded).
        tool_names: names of the offered tools, in request order.
        blocks: the prompt's blocks in the order the provider reads them.
        stream: whether the client asked for server-sent events.
        include_usage: OpenAI ``stream_options.include_usage``.
    """

    provider: str
    model: str
    messages: list[dict[str, Any]]
    tool_names: tuple[str, ...]
    blocks: tuple[PromptBlock, ...]
    stream: bool = False
    include_usage: bool = False

    def prompt(self) -> TokenizedPrompt:
        """The prompt tokenized block by block."""
        return TokenizedPrompt(self.blocks)


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a reply, with the id the wire format shows."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string the wire formats carry."""
        return compact_json(self.arguments)


@dataclass(frozen=True)
class Reply:
    """A reply ready to render: text and/or tool calls with ids.

    Attributes:
        text: the assistant text, or None.
        tool_calls: the tool calls, in order.
    """

    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def from_policy(cls, reply: PolicyReply, id_prefix: str) -> Reply:
        """Give each tool call of a policy reply an id with ``id_prefix``."""
        calls = tuple(
            ToolCall(new_id(id_prefix), name, dict(args)) for name, args in reply.tool_calls
        )
        return cls(text=reply.text, tool_calls=calls)

    @property
    def output_tokens(self) -> int:
        """Generated tokens: the text plus each call's name and JSON arguments."""
        total = count_tokens(self.text or "")
        for call in self.tool_calls:
            total += count_tokens(call.name) + count_tokens(call.arguments_json)
        return total

    def text_pieces(self) -> list[str]:
        """The text cut into tokens, as a stream sends it."""
        return tokenize(self.text) if self.text else []


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event.

    Attributes:
        data: the JSON payload (a dict) or a literal string such as ``[DONE]``.
        event: the SSE ``event:`` name (Anthropic), or None (OpenAI).
        generated_tokens: how many generated tokens this event carries; the
            server paces the stream by it (0 for framing events).
    """

    data: dict[str, Any] | str
    event: str | None = None
    generated_tokens: int = 0

    def encode(self) -> bytes:
        """The event as it goes on the wire, blank line included."""
        payload = (
            self.data if isinstance(self.data, str) else json.dumps(self.data, ensure_ascii=False)
        )
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {payload}\n\n".encode()
