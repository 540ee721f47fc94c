"""Anthropic Messages: request validation, breakpoints, translation and rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.simulator import anthropic_wire
from agent.simulator.exchange import Reply, ToolCall
from agent.simulator.prompt_cache import AnthropicCacheUsage
from cluster.errors import ProviderBadRequest

CACHE = {"type": "ephemeral"}


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(overrides)
    return base


def tool_round_trip() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "!sh ls"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "running"},
                {"type": "tool_use", "id": "tu1", "name": "terminal", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu1",
                    "content": [{"type": "text", "text": "a.txt"}],
                }
            ],
        },
    ]


def test_translates_tool_use_and_tool_result() -> None:
    request = anthropic_wire.parse_request(
        body(messages=tool_round_trip(), tools=[{"name": "terminal"}])
    )
    assert request.tool_names == ("terminal",)
    assert request.messages == [
        {"role": "user", "content": "!sh ls"},
        {
            "role": "assistant",
            "content": "running",
            "tool_calls": [{"id": "tu1", "name": "terminal", "arguments": {"command": "ls"}}],
        },
        {"role": "tool", "tool_call_id": "tu1", "name": "terminal", "content": "a.txt"},
    ]


def test_blocks_follow_tools_system_messages_and_mark_breakpoints() -> None:
    request = anthropic_wire.parse_request(
        body(
            tools=[{"name": "a"}, {"name": "b", "cache_control": CACHE}],
            system=[{"type": "text", "text": "sys", "cache_control": CACHE}],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": CACHE}]}
            ],
        )
    )
    assert [b.cache_breakpoint for b in request.blocks] == [False, True, True, True]
    assert "cache_control" not in "".join(b.text for b in request.blocks)


def test_moving_the_breakpoint_keeps_the_prefix_text() -> None:
    marked = body(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": CACHE}]}
        ]
    )
    plain = body(messages=[{"role": "user", "content": "q"}])
    assert [b.text for b in anthropic_wire.parse_request(marked).blocks] == [
        b.text for b in anthropic_wire.parse_request(plain).blocks
    ]


def test_top_level_cache_control_marks_the_last_block() -> None:
    request = anthropic_wire.parse_request(body(system="s", cache_control=CACHE))
    assert [b.cache_breakpoint for b in request.blocks] == [False, True]


def test_more_than_four_breakpoints_are_refused() -> None:
    tools = [{"name": f"t{i}", "cache_control": CACHE} for i in range(5)]
    with pytest.raises(ProviderBadRequest, match="maximum of 4 blocks with cache_control"):
        anthropic_wire.parse_request(body(tools=tools))


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ("nope", "JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (body(messages=[{"role": "system", "content": "x"}]), "role"),
        (body(messages=[{"role": "user", "content": 7}]), "content"),
        (body(system=7), "system"),
        (
            body(
                messages=[
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}
                ]
            ),
            "unexpected `tool_use_id`",
        ),
        (
            body(
                messages=tool_round_trip()[:2] + [{"role": "user", "content": "ignored your tool"}]
            ),
            "without `tool_result`",
        ),
    ],
)
def test_invalid_requests_say_what_is_wrong(request_body: Any, message: str) -> None:
    with pytest.raises(ProviderBadRequest, match=message) as info:
        anthropic_wire.parse_request(request_body)
    assert info.value.provider == "anthropic"


def test_message_body_usage_and_tool_use() -> None:
    reply = Reply(text="ok", tool_calls=(ToolCall("toolu_1", "terminal", {"command": "ls"}),))
    out = anthropic_wire.message_body(reply, "m", AnthropicCacheUsage(10, 2000, 30))
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "toolu_1", "name": "terminal", "input": {"command": "ls"}},
    ]
    assert out["usage"]["input_tokens"] == 10
    assert out["usage"]["cache_read_input_tokens"] == 2000
    assert out["usage"]["cache_creation_input_tokens"] == 30
    assert out["usage"]["output_tokens"] == reply.output_tokens


def test_stream_events_in_order() -> None:
    reply = Reply(text="hi you", tool_calls=(ToolCall("toolu_1", "t", {"k": "v"}),))
    events = list(anthropic_wire.message_events(reply, "m", AnthropicCacheUsage(1, 2, 3)))
    names = [e.event for e in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    partial = "".join(
        e.data["delta"]["partial_json"]
        for e in events
        if isinstance(e.data, dict) and e.data.get("delta", {}).get("type") == "input_json_delta"
    )
    assert json.loads(partial) == {"k": "v"}
    delta = events[-2].data
    assert isinstance(delta, dict)
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == reply.output_tokens


def test_error_body_format() -> None:
    out = anthropic_wire.error_body(401, "bad key")
    assert out["type"] == "error" and out["error"] == {
        "type": "authentication_error",
        "message": "bad key",
    }
