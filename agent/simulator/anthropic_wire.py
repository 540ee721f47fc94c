"""The Anthropic Messages wire format (``POST /v1/messages``).

Parses and validates a request body the way the API does (missing model,
``max_tokens`` or messages; more than four ``cache_control`` breakpoints; a
``tool_result`` without the ``tool_use`` it answers in the previous message, or
a ``tool_use`` left without its result), translates it to neutral messages and
prompt blocks, and renders replies as a ``message`` body or as the stream
events ``message_start``, ``content_block_start/delta/stop``,
``message_delta``, ``message_stop``.

Prompt blocks follow Anthropic's cache hierarchy: each tool, then the system
prompt (one block per system text block), then each content block of each
message. A block's ``cache_control`` marks a breakpoint and is left out of the
block's text, so moving the breakpoint forward keeps the prefix identical. A
top-level ``cache_control`` (automatic caching) puts a breakpoint on the last
block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.providers.reply_policy import content_text
from agent.simulator.exchange import ParsedRequest, Reply, SseEvent, compact_json, new_id
from agent.simulator.prompt_cache import AnthropicCacheUsage
from agent.simulator.tokens import PromptBlock, count_tokens, tokenize
from cluster.errors import ProviderBadRequest

__all__ = [
    "MAX_CACHE_BREAKPOINTS",
    "PROVIDER",
    "TOOL_CALL_ID_PREFIX",
    "error_body",
    "message_body",
    "message_events",
    "parse_request",
    "usage_body",
]

PROVIDER = "anthropic"
TOOL_CALL_ID_PREFIX = "toolu_"
MAX_CACHE_BREAKPOINTS = 4
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _bad(message: str) -> ProviderBadRequest:
    return ProviderBadRequest(message, provider=PROVIDER)


def _block(prefix: str, item: dict[str, Any]) -> PromptBlock:
    marked = "cache_control" in item and item["cache_control"] is not None
    rest = {key: value for key, value in item.items() if key != "cache_control"}
    return PromptBlock(prefix + compact_json(rest), cache_breakpoint=marked)


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) and "type" in b for b in content):
        return content
    raise _bad(f"{where}: Input should be a valid string or a list of content blocks with a 'type'")


def _tools(body: dict[str, Any]) -> tuple[tuple[str, ...], list[PromptBlock]]:
    tools = body.get("tools")
    if tools is None:
        return (), []
    if not isinstance(tools, list):
        raise _bad("tools: Input should be a valid list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools.{i}.name: Field required")
        names.append(tool["name"])
    return tuple(names), [_block("tool:", tool) for tool in tools]


def _system_blocks(system: Any) -> list[PromptBlock]:
    if system is None:
        return []
    if isinstance(system, str):
        return [_block("system:", {"type": "text", "text": system})] if system else []
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" for b in system
    ):
        return [_block("system:", b) for b in system]
    raise _bad("system: Input should be a valid string or a list of text blocks")


def _user_content(
    blocks: list[dict[str, Any]], i: int, expected_results: set[str], names_by_id: dict[str, str]
) -> list[dict[str, Any]]:
    neutral: list[dict[str, Any]] = []
    texts: list[str] = []
    for block in blocks:
        if block["type"] == "tool_result":
            use_id = block.get("tool_use_id")
            if use_id not in expected_results:
                raise _bad(
                    f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {use_id}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
            expected_results.discard(use_id)
            neutral.append(
                {
                    "role": "tool",
                    "tool_call_id": use_id,
                    "name": names_by_id.get(use_id, "tool"),
                    "content": content_text(block.get("content")),
                }
            )
        elif block["type"] == "text":
            texts.append(str(block.get("text", "")))
    if texts:
        neutral.append({"role": "user", "content": "\n".join(texts)})
    return neutral


def _assistant_content(blocks: list[dict[str, Any]], names_by_id: dict[str, str]) -> dict[str, Any]:
    texts = [str(b.get("text", "")) for b in blocks if b["type"] == "text"]
    calls = []
    for block in blocks:
        if block["type"] == "tool_use":
            call_id, name = str(block.get("id", "")), str(block.get("name", ""))
            names_by_id[call_id] = name
            arguments = block.get("input")
            calls.append(
                {
                    "id": call_id,
                    "name": name,
                    "arguments": arguments if isinstance(arguments, dict) else {},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[PromptBlock]]:
    neutral: list[dict[str, Any]] = []
    blocks: list[PromptBlock] = []
    names_by_id: dict[str, str] = {}
    expected_results: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        role = message["role"]
        content = _content_blocks(message.get("content"), f"messages.{i}.content")
        if expected_results and role != "user":
            raise _bad(_missing_results(expected_results, i))
        if role == "user":
            neutral.extend(_user_content(content, i, expected_results, names_by_id))
            if expected_results:
                raise _bad(_missing_results(expected_results, i))
        else:
            converted = _assistant_content(content, names_by_id)
            expected_results = {call["id"] for call in converted.get("tool_calls", [])}
            neutral.append(converted)
        blocks.extend(_block(f"{role}:", block) for block in content)
    return neutral, blocks


def _missing_results(ids: set[str], i: int) -> str:
    return (
        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(sorted(ids))}. Each `tool_use` block must have a corresponding `tool_result` "
        "block in the next message."
    )


def parse_request(body: Any) -> ParsedRequest:
    """Validate a Messages request body and translate it.

    Args:
        body: the decoded JSON body.

    Returns:
        The parsed request, cache breakpoints marked on its prompt blocks.

    Raises:
        ProviderBadRequest: the body is not a valid request (the message names
            the field and the problem, as the API would).
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("max_tokens: Field required (an integer >= 1)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: Field required (a non-empty list of messages)")
    tool_names, blocks = _tools(body)
    blocks += _system_blocks(body.get("system"))
    neutral, message_blocks = _messages(messages)
    blocks += message_blocks
    if body.get("cache_control") is not None and blocks:
        last = blocks[-1]
        blocks[-1] = PromptBlock(last.text, cache_breakpoint=True)
    found = sum(1 for block in blocks if block.cache_breakpoint)
    if found > MAX_CACHE_BREAKPOINTS:
        raise _bad(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    return ParsedRequest(
        provider=PROVIDER,
        model=model,
        messages=neutral,
        tool_names=tool_names,
        blocks=tuple(blocks),
        stream=body.get("stream") is True,
    )


def usage_body(usage: AnthropicCacheUsage, output_tokens: int) -> dict[str, Any]:
    """The ``usage`` object of a message."""
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_input_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_calls else "end_turn"


def _content(reply: Reply) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if reply.text is not None:
        content.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return content


def message_body(reply: Reply, model: str, usage: AnthropicCacheUsage) -> dict[str, Any]:
    """A non-streaming ``message`` response body."""
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(reply),
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": usage_body(usage, reply.output_tokens),
    }


def message_events(reply: Reply, model: str, usage: AnthropicCacheUsage) -> Iterator[SseEvent]:
    """The server-sent events of a streaming message, ``message_stop`` last."""
    start: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_body(usage, 1),
    }
    yield SseEvent({"type": "message_start", "message": start}, event="message_start")
    yield SseEvent({"type": "ping"}, event="ping")
    for index, block in enumerate(_content(reply)):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                ({"type": "text_delta", "text": piece}, 1) for piece in tokenize(block["text"])
            ]
            head_tokens = 0
        else:
            opening = {**block, "input": {}}
            deltas = [
                ({"type": "input_json_delta", "partial_json": piece}, 1)
                for piece in tokenize(compact_json(block["input"]))
            ]
            head_tokens = count_tokens(block["name"])
        yield SseEvent(
            {"type": "content_block_start", "index": index, "content_block": opening},
            event="content_block_start",
            generated_tokens=head_tokens,
        )
        for delta, tokens in deltas:
            yield SseEvent(
                {"type": "content_block_delta", "index": index, "delta": delta},
                event="content_block_delta",
                generated_tokens=tokens,
            )
        yield SseEvent({"type": "content_block_stop", "index": index}, event="content_block_stop")
    final_usage = usage_body(usage, reply.output_tokens)
    del final_usage["cache_creation"], final_usage["service_tier"]
    yield SseEvent(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": final_usage,
        },
        event="message_delta",
    )
    yield SseEvent({"type": "message_stop"}, event="message_stop")


def error_body(status: int, message: str) -> dict[str, Any]:
    """An error body in Anthropic's format (``{"type": "error", "error": {type, message}}``)."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": new_id("req_"),
    }
