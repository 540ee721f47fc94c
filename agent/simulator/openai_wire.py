"""The OpenAI Chat Completions wire format (``POST /v1/chat/completions``).

Parses and validates a request body the way the API does (the checks a real
client trips over: missing model or messages, a ``tool`` message without the
assistant ``tool_calls`` it answers, tool calls left without results,
``stream_options`` without ``stream``), translates it to neutral messages and
prompt blocks (each tool schema, then each message, rendered as compact JSON in
the client's key order), and renders replies as a ``chat.completion`` body or
as ``chat.completion.chunk`` server-sent events ending in ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from agent.providers.reply_policy import content_text
from agent.simulator.exchange import ParsedRequest, Reply, SseEvent, compact_json, new_id
from agent.simulator.prompt_cache import OpenAICacheUsage
from agent.simulator.tokens import PromptBlock, count_tokens, tokenize
from cluster.errors import ProviderBadRequest

__all__ = [
    "PROVIDER",
    "TOOL_CALL_ID_PREFIX",
    "completion_body",
    "completion_chunks",
    "error_body",
    "parse_request",
    "usage_body",
]

PROVIDER = "openai"
TOOL_CALL_ID_PREFIX = "call_"
_ROLES = ("system", "developer", "user", "assistant", "tool")
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
}


def _bad(message: str) -> ProviderBadRequest:
    return ProviderBadRequest(message, provider=PROVIDER)


def _tool_names(tools: Any) -> tuple[str, ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _bad("Invalid type for 'tools': expected an array of tool objects.")
    names: list[str] = []
    for i, tool in enumerate(tools):
        spec = tool.get("function", tool.get("custom")) if isinstance(tool, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise _bad(f"Missing required parameter: 'tools[{i}].function.name'.")
        names.append(name)
    return tuple(names)


def _assistant(message: dict[str, Any], index: int, names_by_id: dict[str, str]) -> dict[str, Any]:
    neutral: dict[str, Any] = {
        "role": "assistant",
        "content": content_text(message.get("content")) or None,
    }
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"Invalid type for 'messages[{index}].tool_calls': expected an array.")
    neutral_calls: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function, dict)
        ):
            raise _bad(
                f"Missing required parameter: 'messages[{index}].tool_calls[{j}].id' or "
                "'.function'."
            )
        name = str(function.get("name", ""))
        names_by_id[call["id"]] = name
        neutral_calls.append(
            {"id": call["id"], "name": name, "arguments": _arguments(function.get("arguments"))}
        )
    if neutral_calls:
        neutral["tool_calls"] = neutral_calls
    return neutral


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _neutral_messages(messages: list[Any]) -> list[dict[str, Any]]:
    neutral: list[dict[str, Any]] = []
    names_by_id: dict[str, str] = {}
    awaiting: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _bad(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(_ROLES)}."
            )
        role = message["role"]
        if awaiting and role != "tool":
            raise _bad(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(awaiting)}"
            )
        if role in ("system", "developer"):
            continue
        if role == "user":
            neutral.append({"role": "user", "content": content_text(message.get("content"))})
        elif role == "assistant":
            converted = _assistant(message, i, names_by_id)
            awaiting = [call["id"] for call in converted.get("tool_calls", [])]
            neutral.append(converted)
        else:
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in names_by_id:
                raise _bad(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (messages[{i}].tool_call_id={call_id!r})."
                )
            if call_id in awaiting:
                awaiting.remove(call_id)
            neutral.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "name": names_by_id[call_id],
                    "content": content_text(message.get("content")),
                }
            )
    if awaiting:
        raise _bad(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
            f"{', '.join(awaiting)}"
        )
    return neutral


def parse_request(body: Any) -> ParsedRequest:
    """Validate a Chat Completions request body and translate it.

    Args:
        body: the decoded JSON body.

    Returns:
        The parsed request.

    Raises:
        ProviderBadRequest: the body is not a valid request (the message says
            which parameter and why, as the API would).
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("Missing required parameter: 'messages' (a non-empty array of messages).")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    tools = body.get("tools")
    tool_names = _tool_names(tools)
    neutral = _neutral_messages(messages)
    blocks = [PromptBlock(compact_json(tool)) for tool in tools or []]
    blocks += [PromptBlock(compact_json(message)) for message in messages]
    return ParsedRequest(
        provider=PROVIDER,
        model=model,
        messages=neutral,
        tool_names=tool_names,
        blocks=tuple(blocks),
        stream=stream,
        include_usage=include_usage,
    )


def usage_body(usage: OpenAICacheUsage, output_tokens: int) -> dict[str, Any]:
    """The ``usage`` object of a completion."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": usage.prompt_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def completion_body(reply: Reply, model: str, usage: OpenAICacheUsage) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` response body."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in reply.tool_calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": usage_body(usage, reply.output_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }


def completion_chunks(
    reply: Reply, model: str, usage: OpenAICacheUsage, *, include_usage: bool
) -> Iterator[SseEvent]:
    """The server-sent events of a streaming completion, ``[DONE]`` last.

    With ``include_usage`` every chunk carries ``"usage": null`` and a last
    chunk with no choices carries the usage, as the API does.
    """
    base: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            data["usage"] = None
        return data

    yield SseEvent(chunk({"role": "assistant", "content": "", "refusal": None}))
    for piece in reply.text_pieces():
        yield SseEvent(chunk({"content": piece}), generated_tokens=1)
    for index, call in enumerate(reply.tool_calls):
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield SseEvent(chunk({"tool_calls": [head]}), generated_tokens=count_tokens(call.name))
        for piece in tokenize(call.arguments_json):
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            yield SseEvent(chunk(delta), generated_tokens=1)
    yield SseEvent(chunk({}, _finish_reason(reply)))
    if include_usage:
        yield SseEvent({**base, "choices": [], "usage": usage_body(usage, reply.output_tokens)})
    yield SseEvent("[DONE]")


def error_body(status: int, message: str) -> dict[str, Any]:
    """An error body in OpenAI's format (``{"error": {message, type, param, code}}``)."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
