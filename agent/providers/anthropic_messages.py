"""Anthropic messages API through the official ``anthropic`` SDK.

Prompt caching on Anthropic only happens at ``cache_control`` breakpoints (at
most four). We place them where the prefix is stable: the last tool schema,
the system prompt, and the rolling tail of the conversation (the last block of
the last two messages), so each turn reads what the previous turn wrote.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

import anthropic

from agent.messages import Message, Usage
from agent.providers.base import (
    KEY_ENV,
    DeltaCallback,
    ModelRequest,
    ModelResponse,
    SDKClientHolder,
)
from agent.providers.sdk_errors import translate_sdk_error

EPHEMERAL = {"type": "ephemeral"}
TAIL_BREAKPOINTS = 2


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral messages to Anthropic turns: tool results become user turns, roles alternate."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            wire_role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": message["content"],
                }
            ]
        elif role == "assistant":
            wire_role = "assistant"
            blocks = (
                [{"type": "text", "text": message["content"]}] if message.get("content") else []
            )
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                for c in message.get("tool_calls") or []
            ]
        else:
            wire_role = "user"
            blocks = [{"type": "text", "text": message.get("content") or ""}]
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    return turns


def with_breakpoints(
    system: str, tools: Sequence[dict[str, Any]], turns: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (system blocks, tools, turns) with cache_control on the stable prefix and tail."""
    system_blocks = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    wire_tools = [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in tools
    ]
    if wire_tools:
        wire_tools[-1]["cache_control"] = EPHEMERAL
    marked = copy.deepcopy(turns)
    for turn in marked[-TAIL_BREAKPOINTS:]:
        if turn["content"]:
            turn["content"][-1]["cache_control"] = EPHEMERAL
    return system_blocks, wire_tools, marked


def _usage(raw: Any, output_tokens: int | None = None) -> Usage:
    return Usage(
        input_tokens=int(getattr(raw, "input_tokens", 0) or 0),
        output_tokens=int(
            output_tokens if output_tokens is not None else getattr(raw, "output_tokens", 0) or 0
        ),
        cache_read_tokens=int(getattr(raw, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(raw, "cache_creation_input_tokens", 0) or 0),
        api_calls=1,
    )


class AnthropicMessagesProvider(SDKClientHolder):
    """Messages API with streaming, tool use and cache breakpoints."""

    name = "anthropic"

    def _new_client(self, http_client: Any) -> anthropic.Anthropic:
        # Retries are ours (RetryPolicy), so the SDK must not retry underneath them.
        return anthropic.Anthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._key.timeout,
            max_retries=0,
            http_client=http_client,
        )

    def complete(
        self,
        request: ModelRequest,
        *,
        on_delta: DeltaCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ModelResponse:
        system, tools, turns = with_breakpoints(
            request.system, request.tools, to_anthropic_messages(request.messages)
        )
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": system,
            "messages": turns,
            **self._try_timeout(request),
        }
        if tools:
            kwargs["tools"] = tools
        if request.reasoning and request.reasoning.get("budget_tokens"):
            kwargs["thinking"] = {
                "type": "enabled",
                "budget_tokens": int(request.reasoning["budget_tokens"]),
            }
        try:
            with self._calling(should_stop) as client:
                if on_delta is None:
                    return self._parse(client.messages.create(**kwargs))
                return self._stream(client, kwargs, on_delta, should_stop)
        except anthropic.AnthropicError as exc:
            raise translate_sdk_error(
                exc,
                provider=self.name,
                sdk=anthropic,
                key_env=KEY_ENV[self.name],
                base_url=self._base_url,
            ) from exc

    def _parse(self, message: Any) -> ModelResponse:
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [
            {"id": b.id, "name": b.name, "arguments": dict(b.input)}
            for b in message.content
            if b.type == "tool_use"
        ]
        return ModelResponse(
            text=text or None,
            tool_calls=calls,
            usage=_usage(message.usage),
            stop_reason=message.stop_reason,
        )

    def _stream(
        self,
        client: Any,
        kwargs: dict[str, Any],
        on_delta: DeltaCallback,
        should_stop: Callable[[], bool],
    ) -> ModelResponse:
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        start_usage: Any = None
        output_tokens = 0
        stop_reason = None
        stream = client.messages.create(stream=True, **kwargs)
        with stream:
            for event in stream:
                kind = event.type
                if kind == "message_start":
                    start_usage = event.message.usage
                elif kind == "content_block_start" and event.content_block.type == "tool_use":
                    blocks[event.index] = {
                        "id": event.content_block.id,
                        "name": event.content_block.name,
                        "json": "",
                    }
                elif kind == "content_block_delta":
                    if event.delta.type == "text_delta":
                        text.append(event.delta.text)
                        on_delta(event.delta.text)
                    elif event.delta.type == "input_json_delta":
                        blocks[event.index]["json"] += event.delta.partial_json
                elif kind == "message_delta":
                    stop_reason = event.delta.stop_reason
                    output_tokens = int(event.usage.output_tokens or 0)
                if should_stop():
                    break
        calls = [
            {"id": b["id"], "name": b["name"], "arguments": json.loads(b["json"] or "{}")}
            for _, b in sorted(blocks.items())
        ]
        return ModelResponse(
            text="".join(text) or None,
            tool_calls=calls,
            usage=_usage(start_usage, output_tokens),
            stop_reason=stop_reason,
        )
