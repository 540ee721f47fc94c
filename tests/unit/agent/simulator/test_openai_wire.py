"""OpenAI Chat Completions: request validation and translation, reply rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.simulator import openai_wire
from agent.simulator.exchange import Reply, ToolCall
from agent.simulator.prompt_cache import OpenAICacheUsage
from cluster.errors import ProviderBadRequest

TOOLS = [{"type": "function", "function": {"name": "terminal", "parameters": {"type": "object"}}}]


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    base.update(overrides)
    return base


def test_translates_to_neutral_messages() -> None:
    request = openai_wire.parse_request(
        body(
            tools=TOOLS,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "!sh ls"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "terminal", "arguments": '{"command":"ls"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
            ],
        )
    )
    assert request.tool_names == ("terminal",)
    assert request.messages == [
        {"role": "user", "content": "!sh ls"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "terminal", "arguments": {"command": "ls"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": "a.txt"},
    ]
    # tools first, then every message (system included) as a block
    assert len(request.blocks) == 1 + 4
    assert not request.stream


def test_stream_options() -> None:
    request = openai_wire.parse_request(body(stream=True, stream_options={"include_usage": True}))
    assert request.stream and request.include_usage
    with pytest.raises(ProviderBadRequest, match="only allowed when 'stream' is enabled"):
        openai_wire.parse_request(body(stream_options={"include_usage": True}))


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ([], "JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        (body(messages=[{"role": "robot", "content": "x"}]), "role"),
        (
            body(messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}]),
            "must be a response",
        ),
        (body(tools=[{"type": "function", "function": {}}]), "tools\\[0\\]"),
    ],
)
def test_invalid_requests_say_what_is_wrong(request_body: Any, message: str) -> None:
    with pytest.raises(ProviderBadRequest, match=message) as info:
        openai_wire.parse_request(request_body)
    assert info.value.provider == "openai"


def test_tool_calls_without_results_are_refused() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c9", "type": "function", "function": {"name": "t", "arguments": "{}"}}
            ],
        },
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(ProviderBadRequest, match="c9"):
        openai_wire.parse_request(body(messages=messages))


def test_prompt_blocks_keep_the_clients_bytes() -> None:
    a = openai_wire.parse_request(body(messages=[{"role": "user", "content": "x"}]))
    b = openai_wire.parse_request(body(messages=[{"content": "x", "role": "user"}]))
    assert a.blocks != b.blocks  # key order is part of the prefix, as on the real API


def test_completion_body_with_tool_calls() -> None:
    reply = Reply(text=None, tool_calls=(ToolCall("call_1", "terminal", {"command": "ls"}),))
    out = openai_wire.completion_body(reply, "gpt-4o", OpenAICacheUsage(2000, 1920))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "terminal",
        "arguments": '{"command":"ls"}',
    }
    assert out["usage"]["prompt_tokens"] == 2000
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 1920
    assert out["usage"]["total_tokens"] == 2000 + reply.output_tokens


def test_stream_chunks_end_with_usage_and_done() -> None:
    reply = Reply(text="hello world", tool_calls=(ToolCall("call_1", "t", {"a": 1}),))
    events = list(
        openai_wire.completion_chunks(reply, "gpt-4o", OpenAICacheUsage(10, 0), include_usage=True)
    )
    assert events[-1].data == "[DONE]"
    usage_chunk = events[-2].data
    assert isinstance(usage_chunk, dict) and usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == reply.output_tokens
    finish = events[-3].data
    assert isinstance(finish, dict) and finish["choices"][0]["finish_reason"] == "tool_calls"
    text = "".join(
        e.data["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e.data, dict) and e.data["choices"]
    )
    args = "".join(
        tc["function"]["arguments"]
        for e in events
        if isinstance(e.data, dict) and e.data["choices"]
        for tc in e.data["choices"][0]["delta"].get("tool_calls") or []
    )
    assert text == "hello world"
    assert json.loads(args) == {"a": 1}
    assert sum(e.generated_tokens for e in events) == reply.output_tokens


def test_stream_without_usage_has_no_usage_chunk() -> None:
    events = list(
        openai_wire.completion_chunks(
            Reply(text="x"), "m", OpenAICacheUsage(1, 0), include_usage=False
        )
    )
    assert all("usage" not in e.data for e in events if isinstance(e.data, dict))


def test_error_body_format() -> None:
    assert openai_wire.error_body(429, "slow down")["error"]["code"] == "rate_limit_exceeded"
    assert openai_wire.error_body(401, "no")["error"]["code"] == "invalid_api_key"
