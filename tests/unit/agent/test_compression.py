"""The compression policy: when to compress, which messages, the stored boundary. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from agent import AIAgent
from agent.compression import (
    SUMMARY_REQUEST_MARK,
    CompressionSettings,
    effective_history,
    estimate_tokens,
    is_summary,
    plan_compression,
    prompt_tokens,
    summary_message,
    summary_request,
)
from agent.providers.reply_policy import decide_reply
from cluster.errors import ConfigError

SYSTEM = "You are terse."
WORDS = "lorem ipsum dolor sit amet " * 8  # 216 characters: about 54 tokens


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def turns(n: int, start: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        out += [user(f"u{i} {WORDS}"), assistant(f"a{i} {WORDS}")]
    return out


def settings(**overrides: Any) -> CompressionSettings:
    values: dict[str, Any] = {
        "context_length": 1000,
        "threshold": 0.5,
        "target_ratio": 0.3,
        "protect_last_n": 2,
    }
    return CompressionSettings(**{**values, **overrides})


def plan(history: list[dict[str, Any]], **overrides: Any) -> Any:
    return plan_compression(
        settings(**overrides), system=SYSTEM, tools=[], history=history, message=user("next")
    )


def test_a_prompt_under_the_threshold_is_not_compressed() -> None:
    history = turns(3)  # about 350 tokens, threshold 500
    assert prompt_tokens(SYSTEM, [], history, user("next")) < 500
    assert plan(history) is None


def test_past_the_threshold_everything_before_the_last_protected_turns_is_summarised() -> None:
    history = turns(6)  # about 700 tokens
    history[-1] = assistant(history[-1]["content"], prompt_tokens=600)  # the provider's count
    decided = plan(history, target_ratio=0.45)
    assert decided is not None and decided.dropped == 0
    assert decided.summarise == history[:8] and decided.keep == history[8:]
    kept = estimate_tokens(SYSTEM, [], [*history[8:], user("next")])
    assert decided.budget == 450 - kept  # target_ratio x context_length, less what is kept


def test_the_cut_never_splits_a_turn_from_its_tool_results() -> None:
    history = [
        *turns(4),
        user("!sh ls"),
        assistant("", tool_calls=[{"id": "c1", "name": "terminal", "arguments": {}}]),
        {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": WORDS},
        assistant("[terminal] listing"),
        *turns(1, start=9),
    ]
    decided = plan(history)
    assert decided is not None
    assert decided.keep[0] == user("!sh ls") and len(decided.keep) == 6


def test_too_few_turns_to_keep_verbatim_means_no_compression() -> None:
    history = [user("u " + WORDS * 6), assistant("a " + WORDS * 6)]  # one huge turn
    assert plan(history) is None
    assert plan(history, protect_last_n=0) is not None  # nothing protected: all of it


def test_a_history_past_the_window_leaves_its_oldest_turns_out_of_the_summary() -> None:
    history = turns(12)  # about 1400 tokens in a 1000-token window
    decided = plan(history)
    assert decided is not None and decided.dropped > 0
    assert decided.summarise[0]["role"] == "user", "whole turns left out"
    assert decided.summarise + decided.keep == history[decided.dropped :]
    request = estimate_tokens(SYSTEM, [], [*decided.summarise, summary_request(decided)])
    assert request * 1.5 + decided.budget <= 1000  # room for an estimate short by a third
    assert (
        summary_message(decided, "- s")["compaction"]["summarised"]
        == len(decided.summarise) + decided.dropped
    )


def test_the_providers_reported_prompt_size_triggers_when_the_estimate_would_not() -> None:
    history = turns(2)
    assert plan(history) is None
    history[-1] = assistant(history[-1]["content"], prompt_tokens=900)
    assert prompt_tokens(SYSTEM, [], history, user("next")) > 900
    assert plan(history, protect_last_n=1) is not None


def test_a_reported_size_from_before_the_last_compression_is_not_trusted() -> None:
    history = turns(6)
    history[-1] = assistant(history[-1]["content"], prompt_tokens=5000)
    decided = plan(history)
    assert decided is not None
    compressed = [summary_message(decided, "- short"), *decided.keep]
    # The kept reply still says 5000 (the prompt before compression): not read.
    assert prompt_tokens(SYSTEM, [], compressed, user("next")) < 500
    assert plan(compressed) is None


def test_the_stored_history_gives_back_exactly_the_compressed_prompt() -> None:
    stored = turns(6)
    first = plan(stored)
    assert first is not None
    summary = summary_message(first, "- first summary")
    stored += [summary, *turns(3, start=6)]
    view = effective_history(stored)
    assert view == [summary, *stored[8:12], *stored[13:]]
    second = plan(view)
    assert second is not None and second.summarise[0] == summary  # re-summarised with the rest
    again = summary_message(second, "- second summary")
    stored += [again, *turns(1, start=9)]
    assert effective_history(stored) == [again, *second.keep, *stored[-2:]]
    assert [is_summary(m) for m in effective_history(stored)].count(True) == 1


def test_a_history_without_a_summary_is_sent_as_stored() -> None:
    stored = turns(2)
    assert effective_history(stored) == stored


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threshold": 0.0}, "compression.threshold must be a number in (0, 1], got 0.0"),
        ({"target_ratio": 0.6}, "compression.target_ratio must be a number above 0 and below"),
        ({"context_length": 0}, "model.context_length must be a whole number >= 1, got 0"),
        ({"protect_last_n": -1}, "compression.protect_last_n must be a whole number >= 0"),
        ({"threshold": "high"}, "compression.threshold must be a number in (0, 1], got 'high'"),
        ({"context_length": True}, "model.context_length must be a whole number >= 1, got True"),
    ],
)
def test_bad_settings_are_refused_saying_which(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        settings(**overrides)


def test_the_offline_model_answers_a_summary_request_within_its_budget() -> None:
    history = turns(6)
    history[-1] = assistant(history[-1]["content"], prompt_tokens=600)
    decided = plan(history, target_ratio=0.45)
    assert decided is not None
    request = summary_request(decided)
    assert request["content"].startswith(SUMMARY_REQUEST_MARK)
    first = decide_reply([*decided.summarise, request], [])
    assert first == decide_reply([*decided.summarise, request], [])  # deterministic
    assert first.text is not None and first.text.startswith("- user: u0 lorem")
    assert len(first.text) // 3 <= decided.budget
    tight = decide_reply(
        [
            *decided.summarise,
            {
                **request,
                "content": request["content"].replace(
                    f"at most {decided.budget} tokens", "at most 30 tokens"
                ),
            },
        ],
        [],
    )
    assert tight.text is not None and tight.text.startswith("- user: u3")  # the newest that fit


def test_an_agent_compresses_commits_the_summary_first_and_a_rebuilt_agent_sends_the_same() -> None:
    compression = settings(context_length=4000, threshold=0.6, target_ratio=0.4)
    agent = AIAgent(compression=compression, skip_memory=True, skip_context_files=True)
    stored: list[dict[str, Any]] = []
    compressed_at: list[int] = []
    for i in range(30):
        result = agent.run_conversation(f"turn {i} {WORDS}")
        stored += result.new_messages
        if result.compressed:
            compressed_at.append(i)
            assert is_summary(result.new_messages[0])
            assert result.new_messages[1] == user(f"turn {i} {WORDS}")
            assert result.usage.api_calls == 2  # the summary call, then the turn's
    assert compressed_at, "30 turns of ~110 tokens pass 60% of a 4000-token window"
    assert agent.transcript == effective_history(stored)
    rebuilt = AIAgent(compression=compression, skip_memory=True, skip_context_files=True)
    rebuilt.run_conversation("one more", history=stored)
    agent.run_conversation("one more")
    assert rebuilt.transcript == agent.transcript
