"""Per-turn reuse of a cached agent: init_for_turn and the per-message state."""

from __future__ import annotations

import pytest

from cluster.errors import AgentCacheError
from tests.fakes import FakeAgent, FakeClock
from worker.cache import apply_turn_state, init_for_turn
from worker.cache.agent import NEW_TURN_ACTIVITY_DESC, TURN_STATE_KEYS


def busy_agent() -> FakeAgent:
    agent = FakeAgent(last_activity_ts=500.0)
    agent.last_activity_desc = "waiting for tool: terminal"
    agent.api_call_count = 17
    return agent


def test_depth_zero_resets_counter_timestamp_and_description(clock: FakeClock) -> None:
    agent = busy_agent()
    init_for_turn(agent, 0, clock=clock)
    assert agent.api_call_count == 0
    assert agent.last_activity_ts == clock.now
    assert agent.last_activity_desc == NEW_TURN_ACTIVITY_DESC == "starting new turn (cached)"


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_interrupt_depth_keeps_timestamp_and_description(clock: FakeClock, depth: int) -> None:
    agent = busy_agent()
    init_for_turn(agent, depth, clock=clock)
    assert agent.api_call_count == 0
    assert agent.last_activity_ts == 500.0
    assert agent.last_activity_desc == "waiting for tool: terminal"


def test_stuck_interrupt_loop_still_looks_inactive_to_the_watchdog(clock: FakeClock) -> None:
    agent = busy_agent()
    init_for_turn(agent, 0, clock=clock)
    started = agent.last_activity_ts
    for depth in range(1, 4):
        clock.advance(600)
        init_for_turn(agent, depth, clock=clock)
    assert started is not None and agent.last_activity_ts == started
    assert clock.now - started == 1800  # the 30 min watchdog would fire now


def test_default_clock_is_wall_clock() -> None:
    import time

    agent = busy_agent()
    before = time.time()
    init_for_turn(agent, 0)
    assert agent.last_activity_ts is not None and before <= agent.last_activity_ts <= time.time()


def test_negative_depth_is_rejected() -> None:
    with pytest.raises(AgentCacheError, match="interrupt_depth"):
        init_for_turn(busy_agent(), -1)


def test_turn_state_sets_every_per_message_attribute_without_rebuilding() -> None:
    agent = FakeAgent()
    prompt = agent.cached_system_prompt
    state = {
        "tool_progress_callback": print,
        "step_callback": len,
        "stream_delta_callback": repr,
        "status_callback": str,
        "reasoning_config": {"effort": "high"},
        "max_iterations": 12,
    }
    assert set(state) == set(TURN_STATE_KEYS)
    apply_turn_state(agent, state)
    for key, value in state.items():
        assert getattr(agent, key) is value
    assert agent.cached_system_prompt is prompt


def test_callbacks_of_the_previous_message_do_not_survive_a_message_without_them() -> None:
    agent = FakeAgent()
    apply_turn_state(agent, {"stream_delta_callback": print, "reasoning_config": {"effort": "low"}})
    apply_turn_state(agent, {})
    assert agent.stream_delta_callback is None
    assert agent.reasoning_config == {"effort": "low"}
    assert agent.max_iterations == 90


def test_unknown_turn_state_key_is_rejected_with_the_accepted_keys() -> None:
    with pytest.raises(AgentCacheError, match="max_iteration.*accepted keys"):
        apply_turn_state(FakeAgent(), {"max_iteration": 3})
