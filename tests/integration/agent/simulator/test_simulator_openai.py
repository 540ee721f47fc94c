"""The provider simulator against the official OpenAI SDK, unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from agent.providers.pricing import call_cost
from agent.providers.reply_policy import PolicyReply
from agent.simulator import ProviderSimulator

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
TERMINAL: Any = {
    "type": "function",
    "function": {
        "name": "terminal",
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}
LONG_SYSTEM = "You are a careful assistant. " + " rule" * 1500


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: ProviderSimulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test-key", base_url=sim.openai_base_url, max_retries=0) as c:
        yield c


def test_plain_reply_with_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}]
    )
    choice = completion.choices[0]
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


def test_stream_with_final_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream me, please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    with stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me, please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 1


def test_stream_helper_assembles_a_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "!sh ls -la /tmp"}],
        tools=[TERMINAL],
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "terminal"
    assert json.loads(calls[0].function.arguments) == {"command": "ls -la /tmp"}


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "!sh echo hi"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[TERMINAL])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_")
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "hi\n"})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[TERMINAL])
    assert second.choices[0].message.content == "[terminal] hi\n"
    assert second.choices[0].finish_reason == "stop"


def test_second_request_with_the_same_long_prefix_reads_the_cache(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "first"},
    ]
    first = client.chat.completions.create(model=MODEL, messages=messages)
    assert first.usage is not None and first.usage.prompt_tokens > 1024
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "second"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached >= 1024 and (cached - 1024) % 128 == 0
    assert cached <= first.usage.prompt_tokens < second.usage.prompt_tokens


def test_a_different_key_does_not_share_the_cache(
    sim: ProviderSimulator, client: openai.OpenAI
) -> None:
    messages: Any = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "q"}]
    client.chat.completions.create(model=MODEL, messages=messages)
    with openai.OpenAI(
        api_key="sk-other-key", base_url=sim.openai_base_url, max_retries=0
    ) as other:
        usage = other.chat.completions.create(model=MODEL, messages=messages).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_stats_total_and_cost(sim: ProviderSimulator, client: openai.OpenAI) -> None:
    messages: Any = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "q"}]
    usages = [
        client.chat.completions.create(model=MODEL, messages=messages).usage for _ in range(2)
    ]
    stats = sim.stats()["providers"]["openai"]
    assert stats["requests"] == 2
    expected_cost = 0.0
    for usage in usages:
        assert usage is not None and usage.prompt_tokens_details is not None
        cached = usage.prompt_tokens_details.cached_tokens or 0
        expected_cost += call_cost(
            "openai",
            MODEL,
            input_tokens=usage.prompt_tokens - cached,
            cache_read_tokens=cached,
            cache_write_tokens=0,
            output_tokens=usage.completion_tokens,
        )
    assert stats["cost_usd"] == pytest.approx(expected_cost)
    assert stats["cache_read_tokens"] > 0
    assert stats["cache_hit_share"] == pytest.approx(
        stats["cache_read_tokens"] / stats["prompt_tokens"]
    )
    assert sim.stats()["total"]["requests"] == 2


def test_rate_limit_is_retried_by_the_sdk(sim: ProviderSimulator) -> None:
    sim.inject_faults("429")
    with openai.OpenAI(api_key="sk-test", base_url=sim.openai_base_url, max_retries=2) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert completion.choices[0].message.content == "echo: x"
    retries = [r.headers.get("x-stainless-retry-count") for r in sim.recorded_requests()]
    assert retries == ["0", "1"]
    assert sim.stats()["providers"]["openai"]["errors"] == 1


def test_rate_limit_without_retries_raises(sim: ProviderSimulator, client: openai.OpenAI) -> None:
    sim.inject_faults("429")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after-ms"] == "50"


def test_server_error_is_retried(sim: ProviderSimulator) -> None:
    sim.inject_faults("500")
    with openai.OpenAI(api_key="sk-test", base_url=sim.openai_base_url, max_retries=1) as client:
        client.with_options(timeout=5).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert len(sim.recorded_requests()) == 2


def test_bad_key_raises_authentication_error(sim: ProviderSimulator) -> None:
    with openai.OpenAI(api_key="bad-key", base_url=sim.openai_base_url, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_dropped_connection_raises_connection_error(
    sim: ProviderSimulator, client: openai.OpenAI
) -> None:
    sim.inject_faults("drop")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    # the next request is answered normally
    assert client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "y"}]
    ).choices


def test_slow_answer_hits_the_client_timeout(sim: ProviderSimulator, client: openai.OpenAI) -> None:
    sim.inject_faults("slow:30")
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )


def test_invalid_request_raises_bad_request_with_the_reason(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceding message"):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}]
        )


def test_recorded_requests_show_parameters_but_no_key(
    sim: ProviderSimulator, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        prompt_cache_key="session-42",
        reasoning_effort="low",
    )
    (recorded,) = sim.recorded_requests()
    assert recorded.provider == "openai" and recorded.path == "/v1/chat/completions"
    assert recorded.json()["prompt_cache_key"] == "session-42"
    assert recorded.json()["reasoning_effort"] == "low"
    assert "authorization" not in recorded.headers
    assert "sk-test-key" not in json.dumps(recorded.as_dict())


def test_scripted_replies_come_before_the_policy(
    sim: ProviderSimulator, client: openai.OpenAI
) -> None:
    sim.script(PolicyReply(text="thinking", tool_calls=(("terminal", {"command": "pwd"}),)), "done")
    first = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
    message = first.choices[0].message
    assert message.content == "thinking"
    assert message.tool_calls is not None and message.tool_calls[0].function.name == "terminal"  # type: ignore[union-attr]
    second = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "b"}]
    )
    assert second.choices[0].message.content == "done"
    third = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "c"}])
    assert third.choices[0].message.content == "echo: c"


def test_a_prompt_past_the_context_window_is_refused_and_a_summary_request_answered() -> None:
    with (
        ProviderSimulator(context_window=300) as small,
        openai.OpenAI(api_key="sk-test-key", base_url=small.openai_base_url, max_retries=0) as c,
    ):
        with pytest.raises(openai.BadRequestError, match="maximum context length is 300 tokens"):
            c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "word " * 400}]
            )
        asked = (
            "[context compression request] Summarise it in at most 40 tokens: the facts a "
            "continuation needs."
        )
        completion = c.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "we fly to Lisbon on the third of May"},
                {"role": "assistant", "content": "noted"},
                {"role": "user", "content": asked},
            ],
        )
        assert completion.choices[0].message.content == (
            "- user: we fly to Lisbon on the third of May"
        )
        assert small.stats()["total"]["errors"] == 1
