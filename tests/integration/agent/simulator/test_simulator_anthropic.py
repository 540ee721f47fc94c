"""The provider simulator against the official Anthropic SDK, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from agent.providers.pricing import call_cost
from agent.simulator import ProviderSimulator

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-6"
TERMINAL: Any = {
    "name": "terminal",
    "description": "Run a shell command.",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}
LONG_SYSTEM = "You are a careful assistant. " + " rule" * 1500
CACHED_SYSTEM: Any = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: ProviderSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key="sk-ant-test", base_url=sim.anthropic_base_url, max_retries=0
    ) as c:
        yield c


def test_plain_reply_with_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0


def test_stream_helper_text_and_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "stream me, please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me, please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 1


def test_raw_stream_events(client: anthropic.Anthropic) -> None:
    stream = client.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in kinds


def test_streamed_tool_use_is_assembled(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[TERMINAL],
        messages=[{"role": "user", "content": "!sh ls -la"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (block,) = final.content
    assert (
        block.type == "tool_use"
        and block.name == "terminal"
        and block.input == {"command": "ls -la"}
    )


def test_tool_call_round_trip(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "!sh echo hi"}]
    first = client.messages.create(model=MODEL, max_tokens=256, tools=[TERMINAL], messages=messages)
    assert first.stop_reason == "tool_use"
    tool_use = first.content[0]
    assert tool_use.type == "tool_use" and tool_use.id.startswith("toolu_")
    messages.append(
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
    )
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "hi\n"}],
        }
    )
    second = client.messages.create(
        model=MODEL, max_tokens=256, tools=[TERMINAL], messages=messages
    )
    assert second.content[0].type == "text" and second.content[0].text == "[terminal] hi\n"


def test_cache_breakpoint_writes_then_reads(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "first"}]
    first = client.messages.create(
        model=MODEL, max_tokens=256, system=CACHED_SYSTEM, messages=messages
    )
    assert first.usage.cache_read_input_tokens == 0
    written = first.usage.cache_creation_input_tokens
    assert written is not None and written > 1024
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]
    second = client.messages.create(
        model=MODEL, max_tokens=256, system=CACHED_SYSTEM, messages=messages
    )
    assert second.usage.cache_read_input_tokens == written
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens > first.usage.input_tokens


def test_short_prefix_is_not_cached(client: anthropic.Anthropic) -> None:
    system: Any = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        usage = client.messages.create(
            model=MODEL, max_tokens=256, system=system, messages=[{"role": "user", "content": "x"}]
        ).usage
        assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 0


def test_stats_total_and_cost(sim: ProviderSimulator, client: anthropic.Anthropic) -> None:
    usages = [
        client.messages.create(
            model=MODEL,
            max_tokens=256,
            system=CACHED_SYSTEM,
            messages=[{"role": "user", "content": "q"}],
        ).usage
        for _ in range(2)
    ]
    expected = sum(
        call_cost(
            "anthropic",
            MODEL,
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cache_read_input_tokens or 0,
            cache_write_tokens=u.cache_creation_input_tokens or 0,
            output_tokens=u.output_tokens,
        )
        for u in usages
    )
    stats = sim.stats()["providers"]["anthropic"]
    assert stats["requests"] == 2
    assert stats["cache_write_tokens"] == usages[0].cache_creation_input_tokens
    assert stats["cache_read_tokens"] == usages[1].cache_read_input_tokens
    assert stats["cost_usd"] == pytest.approx(expected)


def test_rate_limit_is_retried_by_the_sdk(sim: ProviderSimulator) -> None:
    sim.inject_faults("429")
    with anthropic.Anthropic(
        api_key="sk-ant", base_url=sim.anthropic_base_url, max_retries=2
    ) as client:
        message = client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )
    assert message.content[0].type == "text"
    assert len(sim.recorded_requests()) == 2


def test_rate_limit_error_body_is_in_anthropic_format(
    sim: ProviderSimulator, client: anthropic.Anthropic
) -> None:
    sim.inject_faults("429")
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"


def test_bad_key_raises_authentication_error(sim: ProviderSimulator) -> None:
    with anthropic.Anthropic(
        api_key="bad-key", base_url=sim.anthropic_base_url, max_retries=0
    ) as client:
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}]
            )


def test_dropped_connection_raises_connection_error(
    sim: ProviderSimulator, client: anthropic.Anthropic
) -> None:
    sim.inject_faults("drop")
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )


def test_too_many_breakpoints_raise_bad_request(client: anthropic.Anthropic) -> None:
    system: Any = [
        {"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}} for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
        client.messages.create(
            model=MODEL, max_tokens=64, system=system, messages=[{"role": "user", "content": "x"}]
        )


def test_recorded_request_shows_thinking_and_no_key(
    sim: ProviderSimulator, client: anthropic.Anthropic
) -> None:
    client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "x"}],
    )
    (recorded,) = sim.recorded_requests()
    assert recorded.provider == "anthropic"
    assert recorded.json()["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert not {"authorization", "x-api-key"} & set(recorded.headers)
