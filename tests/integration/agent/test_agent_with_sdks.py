"""AIAgent through the official openai and anthropic SDKs against the provider simulator."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import msgpack
import pytest

from agent import AIAgent
from agent.providers import RetryPolicy
from agent.simulator import ProviderSimulator
from agent.simulator.recording import RecordedRequest
from agent.tools import ToolEnvironment
from cluster.errors import ProviderAuthError, ProviderUnavailable

pytestmark = pytest.mark.integration

# Pushes the prompt past the providers' 1,024-token caching minimum.
LONG_BRIEF = "Operating notes for this deployment. " + " ".join(
    f"Rule {i}: keep answers short, cite the command you ran, and never print secrets."
    for i in range(120)
)
FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def make_agent(
    sim: ProviderSimulator, provider: str, tool_env: ToolEnvironment, **overrides: Any
) -> AIAgent:
    base_url = sim.openai_base_url if provider == "openai" else sim.anthropic_base_url
    options: dict[str, Any] = {
        "model": "sim-gpt" if provider == "openai" else "sim-claude",
        "api_key": f"sk-test-{provider}-0123456789",
        "base_url": base_url,
        "provider": provider,
        "session_id": f"sess-{provider}",
        "ephemeral_system_prompt": LONG_BRIEF,
        "tool_env": tool_env,
        "skip_context_files": True,
        "retry_policy": FAST_RETRIES,
    }
    options.update(overrides)
    return AIAgent(**options)


def prefix_of(request: RecordedRequest) -> str:
    """The cache-relevant prefix of a recorded request: tools and system prompt, as sent."""
    body = request.json()
    system = body.get("system")
    if system is None:
        system = body["messages"][0]
    return json.dumps({"tools": body.get("tools"), "system": system}, sort_keys=True)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_multi_turn_with_tools_streams_and_hits_the_cache_from_turn_two(
    sim: ProviderSimulator, tool_env: ToolEnvironment, provider: str
) -> None:
    agent = make_agent(sim, provider, tool_env)
    deltas: list[str] = []
    agent.stream_delta_callback = deltas.append
    try:
        first = agent.run_conversation("!sh echo hello-from-sandbox")
        second = agent.run_conversation("what did it print?")
        third = agent.run_conversation("!sh pwd")
    finally:
        agent.release_clients()

    assert [m["role"] for m in first.new_messages] == ["user", "assistant", "tool", "assistant"]
    assert "hello-from-sandbox" in first.new_messages[2]["content"]
    assert "hello-from-sandbox" in first.text
    assert first.usage.api_calls == 2
    assert "".join(deltas).strip(), "streamed deltas reached the callback"
    assert second.text == "echo: what did it print?"
    assert first.usage.cache_write_tokens > 0 or provider == "openai"  # openai reports no writes
    assert second.usage.cache_read_tokens > 1000
    assert third.usage.cache_read_tokens > second.usage.cache_read_tokens
    prefixes = {prefix_of(r) for r in sim.recorded_requests()}
    assert len(prefixes) == 1, "every request of the session sent the byte-identical prefix"
    assert sim.stats()["total"]["cache_read_tokens"] > 0


def test_openai_sends_prompt_cache_key_and_per_turn_reasoning(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "openai", tool_env)
    try:
        agent.run_conversation("hi")
        agent.reasoning_config = {"effort": "low"}
        agent.run_conversation("think harder")
    finally:
        agent.release_clients()
    first, second = (r.json() for r in sim.recorded_requests())
    assert first["prompt_cache_key"] == second["prompt_cache_key"] == "sess-openai"
    assert "reasoning_effort" not in first
    assert second["reasoning_effort"] == "low"


def test_callbacks_set_between_turns_apply_to_the_next_turn_only(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "anthropic", tool_env)
    turn1: list[str] = []
    turn2: list[str] = []
    tools_seen: list[str] = []
    try:
        agent.stream_delta_callback = turn1.append
        agent.run_conversation("one")
        agent.stream_delta_callback = turn2.append
        agent.tool_progress_callback = lambda name, args: tools_seen.append(name)
        prompt_before = agent.cached_system_prompt
        agent.run_conversation("!sh echo two")
        assert agent.cached_system_prompt is prompt_before, (
            "the frozen prompt is the very same object"
        )
    finally:
        agent.release_clients()
    assert "one" in "".join(turn1) and "two" not in "".join(turn1)
    assert "two" in "".join(turn2)
    assert tools_seen == ["terminal"]


def test_a_rebuilt_agent_sends_the_persisted_prefix_byte_identically(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    first = make_agent(sim, "anthropic", tool_env)
    result = first.run_conversation("remember this")
    stored = msgpack.packb(first.frozen_prompt().as_dict())
    history = msgpack.unpackb(msgpack.packb(result.new_messages))
    first.release_clients()

    # Another worker: different ephemeral prompt in its config, but the session's frozen prefix
    # wins.
    rebuilt = make_agent(
        sim,
        "anthropic",
        tool_env,
        frozen_prompt=msgpack.unpackb(stored),
        ephemeral_system_prompt="something else entirely",
    )
    try:
        again = rebuilt.run_conversation("and now?", history=history)
    finally:
        rebuilt.release_clients()
    one, two = sim.recorded_requests()
    assert prefix_of(one) == prefix_of(two)
    assert again.usage.cache_read_tokens > 1000


def test_interrupt_stops_a_turn_stuck_in_a_slow_model_call(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "openai", tool_env)
    sim.set_latency(ttft=30.0)
    threading.Timer(0.3, agent.interrupt, args=("user sent /stop",)).start()
    started = time.monotonic()
    try:
        result = agent.run_conversation("this will hang")
    finally:
        sim.set_latency(ttft=0.0)
    assert result.interrupted and result.interrupt_reason == "user sent /stop"
    assert time.monotonic() - started < 5
    # The agent is still usable afterwards: a fresh client was opened.
    assert agent.client is not None
    assert agent.run_conversation("hello again").text == "echo: hello again"
    agent.release_clients()


def test_inactivity_watchdog_interrupts_a_stuck_turn(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "anthropic", tool_env, inactivity_timeout=0.3)
    sim.set_latency(ttft=30.0)
    try:
        result = agent.run_conversation("hang please")
    finally:
        sim.set_latency(ttft=0.0)
        agent.release_clients()
    assert result.interrupted
    assert result.interrupt_reason is not None and "inactive" in result.interrupt_reason


def test_rate_limits_are_retried_and_the_turn_succeeds(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "openai", tool_env)
    sim.inject_faults("429", "500")
    try:
        result = agent.run_conversation("after two failures")
    finally:
        agent.release_clients()
    assert result.text == "echo: after two failures"


def test_persistent_failures_give_up_with_a_clear_error(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "anthropic", tool_env)
    sim.inject_faults("500", "500", "500")
    with pytest.raises(ProviderUnavailable, match="anthropic: gave up after 3 attempts"):
        agent.run_conversation("never answered")
    agent.release_clients()


def test_bad_api_key_is_an_auth_error_naming_the_provider_and_the_fix(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    agent = make_agent(sim, "openai", tool_env, api_key="bad-key-123")
    with pytest.raises(ProviderAuthError, match="openai rejected the credentials.*OPENAI_API_KEY"):
        agent.run_conversation("hi")
    agent.release_clients()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_failing_tool_goes_back_to_the_model_and_the_turn_completes(
    sim: ProviderSimulator, tool_env: ToolEnvironment, provider: str
) -> None:
    agent = make_agent(sim, provider, tool_env)
    try:
        result = agent.run_conversation('!tool terminal {"no_command": true}')
        missing = agent.run_conversation("!tool no_such_tool {}")
    finally:
        agent.release_clients()
    tool_reply = result.new_messages[2]
    assert tool_reply["role"] == "tool" and "command" in tool_reply["content"]
    assert result.text.startswith("[terminal]")
    assert not result.interrupted
    assert "no_such_tool" in missing.text or missing.text.startswith("echo:")


def test_construction_makes_no_network_call_but_builds_the_client(
    tool_env: ToolEnvironment,
) -> None:
    # Nothing listens on port 9: any network call at construction would fail.
    agent = AIAgent(
        model="m",
        api_key="sk-x",
        base_url="http://127.0.0.1:9/v1",
        provider="openai",
        session_id="s1",
        tool_env=tool_env,
    )
    assert agent.client is not None
    assert agent.task_id == agent.session_id == "s1"
    assert "sk-x" not in repr(agent)
    agent.release_clients()
    assert agent.client is None
    agent.release_clients()  # idempotent
