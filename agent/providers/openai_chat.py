"""OpenAI chat completions through the official ``openai`` SDK.

Sends ``prompt_cache_key`` = session id so OpenAI routes the session's calls to
the same cache shard, and reads ``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai

from agent.messages import Message, Usage
from agent.providers.base import (
    KEY_ENV,
    DeltaCallback,
    ModelRequest,
    ModelResponse,
    SDKClientHolder,
)
from agent.providers.sdk_errors import translate_sdk_error


def to_openai_messages(
    system: str, messages: list[Message] | tuple[Message, ...]
) -> list[dict[str, Any]]:
    """Neutral messages to the chat completions wire format (system first)."""
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            wire.append(
                {
                    "role": "assistant",
                    "content": message.get("content"),
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {
                                "name": call["name"],
                                "arguments": json.dumps(call["arguments"], sort_keys=True),
                            },
                        }
                        for call in message["tool_calls"]
                    ],
                }
            )
        elif role == "tool":
            wire.append(
                {
                    "role": "tool",
                    "tool_call_id": message["tool_call_id"],
                    "content": message["content"],
                }
            )
        else:
            wire.append({"role": role, "content": message.get("content") or ""})
    return wire


def to_openai_tools(tools: Any) -> list[dict[str, Any]]:
    """Neutral tool schemas to function tools, order kept."""
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t["description"],
                "parameters": t["parameters"],
            },
        }
        for t in tools
    ]


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage(api_calls=1)
    details = getattr(raw, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(
        input_tokens=int(raw.prompt_tokens) - cached,
        output_tokens=int(raw.completion_tokens),
        cache_read_tokens=cached,
        api_calls=1,
    )


def _parse_arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"_invalid_json": raw}
    return value if isinstance(value, dict) else {"_value": value}


class OpenAIChatProvider(SDKClientHolder):
    """Chat completions with streaming, tool calls and prompt-cache accounting."""

    name = "openai"

    def _new_client(self, http_client: Any) -> openai.OpenAI:
        # Retries are ours (RetryPolicy), so the SDK must not retry underneath them.
        return openai.OpenAI(
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
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request.system, list(request.messages)),
            "max_completion_tokens": request.max_tokens,
            "prompt_cache_key": request.session_id,
            **self._try_timeout(request),
        }
        if request.tools:
            kwargs["tools"] = to_openai_tools(request.tools)
        if request.reasoning and request.reasoning.get("effort"):
            kwargs["reasoning_effort"] = request.reasoning["effort"]
        try:
            with self._calling(should_stop) as client:
                if on_delta is None:
                    return self._parse(client.chat.completions.create(**kwargs))
                return self._stream(client, kwargs, on_delta, should_stop)
        except openai.OpenAIError as exc:
            raise translate_sdk_error(
                exc,
                provider=self.name,
                sdk=openai,
                key_env=KEY_ENV[self.name],
                base_url=self._base_url,
            ) from exc

    def _parse(self, completion: Any) -> ModelResponse:
        choice = completion.choices[0]
        calls = [
            {
                "id": tc.id,
                "name": tc.function.name,
                "arguments": _parse_arguments(tc.function.arguments),
            }
            for tc in (choice.message.tool_calls or [])
        ]
        return ModelResponse(
            text=choice.message.content,
            tool_calls=calls,
            usage=_usage(completion.usage),
            stop_reason=choice.finish_reason,
        )

    def _stream(
        self,
        client: Any,
        kwargs: dict[str, Any],
        on_delta: DeltaCallback,
        should_stop: Callable[[], bool],
    ) -> ModelResponse:
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = Usage(api_calls=1)
        finish = None
        stream = client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = choice.finish_reason or finish
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                    on_delta(delta.content)
                for tc in delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                if should_stop():
                    break
        tool_calls = [
            {"id": c["id"], "name": c["name"], "arguments": _parse_arguments(c["arguments"])}
            for _, c in sorted(calls.items())
        ]
        return ModelResponse(
            text="".join(text) or None, tool_calls=tool_calls, usage=usage, stop_reason=finish
        )
