"""Figure 3's set-up: the compression scenario's window, the ideal under a prompt push."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.compression import PROMPT_TOKENS_FIELD, plan_compression
from coordinator.bench.baselines import AgentShape, InProcessIdeal, ModelEndpoint
from coordinator.bench.economics import compression_config


def _first_compression(first: int, growth: int, turns: int) -> int | None:
    """The turn at which the compression policy first compresses a session whose prompt,
    as the provider counts it, starts at ``first`` tokens and grows ``growth`` a turn."""
    settings = compression_config(first, growth, turns)
    user_chars = 4 * (growth * 4 // 5)  # most of a turn's growth is the user's message
    history: list[dict[str, object]] = []
    for turn in range(turns):
        message = {"role": "user", "content": "x" * user_chars}
        if plan_compression(settings, system="s", tools=[], history=history, message=message):
            return turn
        reply = {"role": "assistant", "content": "ok", PROMPT_TOKENS_FIELD: first + growth * turn}
        history += [message, reply]
    return None


@pytest.mark.parametrize(("turns", "crossing"), [(20, 10), (6, 3), (4, 2)])
def test_the_window_makes_every_session_compress_halfway_through_the_run(
    turns: int, crossing: int
) -> None:
    assert _first_compression(1837, 330, turns) == crossing


def test_a_compressed_prompt_aims_below_the_threshold_and_above_the_first_prompt() -> None:
    settings = compression_config(1837, 330, 20)
    assert settings.target_ratio < settings.threshold
    assert 1837 <= settings.target_tokens < settings.trigger_tokens


def test_the_ideal_under_a_prompt_push_rebuilds_every_agent_and_keeps_each_conversation(
    tmp_path: Path,
) -> None:
    ideal = InProcessIdeal(ModelEndpoint(), tmp_path)
    first = [ideal.turn(f"s{i}", f"hello {i}") for i in range(2)]
    second = ideal.turn("s0", "and again")

    ideal.reshape(AgentShape(ephemeral_prompt="Answer in one short paragraph."))
    pushed = ideal.turn("s0", "after the push")
    fresh = InProcessIdeal(ModelEndpoint(), tmp_path)
    fresh.reshape(AgentShape(ephemeral_prompt="Answer in one short paragraph."))
    new_session = fresh.turn("s0", "after the push")

    assert [f.agent_built for f in first] == [True, True] and not second.agent_built
    assert pushed.agent_built
    # The rebuilt agent sends the conversation so far: a longer prompt than a new session's.
    assert pushed.input_tokens > new_session.input_tokens
    ideal.close()
    fresh.close()
