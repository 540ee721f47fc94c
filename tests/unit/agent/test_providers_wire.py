"""Wire translation and the retry policy, without a network."""

from __future__ import annotations

import random

import pytest

from agent.providers import RetryPolicy, call_with_retries, make_provider
from agent.providers.anthropic_messages import to_anthropic_messages, with_breakpoints
from agent.providers.openai_chat import to_openai_messages
from cluster.errors import ConfigError, ProviderAuthError, ProviderError, ProviderUnavailable

CONVERSATION = [
    {"role": "user", "content": "list files"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "name": "terminal", "arguments": {"command": "ls"}}],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": "a.txt"},
    {"role": "assistant", "content": "There is a.txt"},
    {"role": "user", "content": "thanks"},
]
TOOLS = [
    {"name": "a", "description": "A", "parameters": {"type": "object"}},
    {"name": "b", "description": "B", "parameters": {"type": "object"}},
]


def test_openai_messages_put_system_first_and_keep_tool_call_ids() -> None:
    wire = to_openai_messages("SYS", CONVERSATION)
    assert wire[0] == {"role": "system", "content": "SYS"}
    assert wire[2]["tool_calls"][0]["id"] == "c1"
    assert wire[2]["tool_calls"][0]["function"]["arguments"] == '{"command": "ls"}'
    assert wire[3] == {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}


def test_anthropic_turns_alternate_and_tool_results_are_user_turns() -> None:
    turns = to_anthropic_messages(CONVERSATION)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "c1",
        "content": "a.txt",
    }


def test_anthropic_breakpoints_are_at_most_four_on_tools_system_and_tail() -> None:
    system, tools, turns = with_breakpoints("SYS", TOOLS, to_anthropic_messages(CONVERSATION))
    marks = [system[0].get("cache_control")] + [t.get("cache_control") for t in tools]
    marks += [b.get("cache_control") for t in turns for b in t["content"]]
    assert sum(1 for m in marks if m) == 4
    assert "cache_control" in tools[-1] and "cache_control" not in tools[0]
    assert "cache_control" in turns[-1]["content"][-1]
    assert "cache_control" in turns[-2]["content"][-1]
    assert "cache_control" not in turns[0]["content"][-1]


def test_breakpoints_do_not_mutate_the_callers_turns() -> None:
    turns = to_anthropic_messages(CONVERSATION)
    with_breakpoints("SYS", TOOLS, turns)
    assert all("cache_control" not in b for t in turns for b in t["content"])


def test_retryable_errors_are_retried_then_given_up_with_a_clear_error() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def failing(_timeout: float | None) -> str:
        calls.append(1)
        raise ProviderError("openai HTTP 429: slow down", provider="openai", retryable=True)

    with pytest.raises(ProviderUnavailable, match="gave up after 3 attempts"):
        call_with_retries(
            failing,
            policy=RetryPolicy(attempts=3, base_delay=0.5),
            provider="openai",
            sleep=waits.append,
            rng=random.Random(1),
        )
    assert len(calls) == 3
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_auth_errors_are_not_retried() -> None:
    calls: list[int] = []

    def failing(_timeout: float | None) -> str:
        calls.append(1)
        raise ProviderAuthError("bad key", provider="anthropic")

    with pytest.raises(ProviderAuthError):
        call_with_retries(
            failing, policy=RetryPolicy(attempts=5), provider="anthropic", sleep=lambda s: None
        )
    assert calls == [1]


def test_success_after_a_transient_failure() -> None:
    outcomes = iter([ProviderError("503", provider="openai", retryable=True), "ok"])

    def flaky(_timeout: float | None) -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert (
        call_with_retries(flaky, policy=RetryPolicy(), provider="openai", sleep=lambda s: None)
        == "ok"
    )


def test_missing_api_key_names_the_environment_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_provider(provider="openai", api_key=None, base_url=None, environ={})


def test_unknown_provider_and_mismatched_api_mode_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="provider must be one of"):
        make_provider(provider="gemini", api_key="k", base_url=None)
    with pytest.raises(ConfigError, match="does not fit provider"):
        make_provider(provider="anthropic", api_key="k", base_url=None, api_mode="chat_completions")
