"""Interrupts that reach a turn before its model loop runs: applied by the loop-start hook."""

from __future__ import annotations

import threading
from pathlib import Path

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry
from agent.tools.sandbox_config import SandboxConfig
from worker.running_turns import CUT_OFF_REASON, RunningTurns

REASON = "stopped by /stop (the chat command or POST /v1/sessions/{key}/interrupt)"


def _agent(tmp_path: Path) -> AIAgent:
    env = ToolEnvironment.default(tmp_path, sandbox=SandboxConfig(backend="local"))
    return AIAgent(
        tool_registry=ToolRegistry(), tool_env=env, skip_context_files=True, skip_memory=True
    )


def test_a_stop_that_arrives_while_the_agent_is_built_stops_the_turn_and_starts_no_thread(
    tmp_path: Path,
) -> None:
    turns, agent = RunningTurns(), _agent(tmp_path)
    hook = turns.started("s", 7, agent)
    threads = threading.active_count()
    assert turns.interrupt("s", 7, REASON) is True  # the turn is here, its loop not yet running
    assert threading.active_count() == threads, "no thread waits for the loop to start"
    result = agent.run_conversation("hello", on_loop_start=hook)
    assert result.interrupted and result.interrupt_reason == REASON
    assert result.usage.as_dict()["input_tokens"] == 0, "no model call was made"


def test_a_stop_that_arrives_before_the_turn_started_here_waits_for_it(tmp_path: Path) -> None:
    turns, agent = RunningTurns(), _agent(tmp_path)
    assert turns.interrupt("s", 7, REASON) is False
    result = agent.run_conversation("hello", on_loop_start=turns.started("s", 7, agent))
    assert result.interrupted and result.interrupt_reason == REASON


def test_a_stop_meant_for_an_earlier_turn_never_hits_the_next_one(tmp_path: Path) -> None:
    turns, agent = RunningTurns(), _agent(tmp_path)
    turns.interrupt("s", 6, REASON)  # lease token 6: a turn that ended before it arrived
    result = agent.run_conversation("hello", on_loop_start=turns.started("s", 7, agent))
    assert not result.interrupted and result.text == "echo: hello"


def test_a_drain_cut_off_stops_a_turn_whose_loop_had_not_started(tmp_path: Path) -> None:
    turns, agent = RunningTurns(), _agent(tmp_path)
    hook = turns.started("s", 7, agent)
    assert turns.cut_off_all() == 1 and turns.cut_off
    result = agent.run_conversation("hello", on_loop_start=hook)
    assert result.interrupted and result.interrupt_reason == CUT_OFF_REASON
