"""Messages taken into a running turn at its safe points (steer, collect), offline model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import AIAgent
from agent.steering import may_take_messages
from agent.tools import ToolEnvironment, ToolRegistry
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.sandbox_config import SandboxConfig


class Inbox:
    """A steer callback handing out scripted batches, one per safe point asked."""

    def __init__(self, *batches: Sequence[str]) -> None:
        self.batches = [list(b) for b in batches]
        self.asked = 0

    def __call__(self) -> list[str]:
        self.asked += 1
        return self.batches.pop(0) if self.batches else []


def _agent(tmp_path: Path, handler: Any = None, **kwargs: Any) -> AIAgent:
    registry = ToolRegistry()
    registry.register(
        ToolSpec(
            name="work",
            description="does some work",
            parameters={"type": "object", "properties": {}},
            toolset="test",
            handler=handler or (lambda _args, _ctx: "worked"),
        )
    )
    env = ToolEnvironment.default(tmp_path, sandbox=SandboxConfig(backend="local"))
    return AIAgent(
        tool_registry=registry, tool_env=env, skip_context_files=True, skip_memory=True, **kwargs
    )


def _roles_and_texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], str(m.get("content") or "")) for m in messages]


def test_a_message_taken_after_the_final_reply_gets_a_model_call_of_its_own(
    tmp_path: Path,
) -> None:
    agent = _agent(tmp_path)
    agent.steer_callback = Inbox([], ["and also this"])
    result = agent.run_conversation("hello")
    assert result.text == "echo: and also this", "the turn's reply answers the steered message"
    assert _roles_and_texts(result.new_messages) == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
        ("user", "and also this"),
        ("assistant", "echo: and also this"),
    ]
    assert agent.api_call_count == 2


def test_a_message_taken_during_a_tool_call_follows_the_tool_result(tmp_path: Path) -> None:
    inbox = Inbox()

    def work(_args: dict[str, Any], _ctx: ToolContext) -> str:
        inbox.batches = [["change of plan"]]  # sent while the tool runs
        return "worked"

    agent = _agent(tmp_path, work)
    agent.steer_callback = inbox
    result = agent.run_conversation("!tool work {}")
    roles = [m["role"] for m in result.new_messages]
    assert roles == ["user", "assistant", "tool", "user", "assistant"], "no tool call orphaned"
    assert result.text == "echo: change of plan"


def test_collected_messages_given_before_the_first_call_join_the_turn(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.steer_callback = Inbox(["part two", "part three"])
    result = agent.run_conversation("part one")
    assert [m["content"] for m in result.new_messages if m["role"] == "user"] == [
        "part one",
        "part two",
        "part three",
    ]
    assert agent.api_call_count == 1 and result.text == "echo: part three"


def test_no_message_is_taken_without_a_model_call_left_to_answer_it(tmp_path: Path) -> None:
    agent = _agent(tmp_path, max_iterations=1)
    inbox = Inbox([], ["too late"])
    agent.steer_callback = inbox
    result = agent.run_conversation("hello")
    assert result.text == "echo: hello" and inbox.asked == 1, "not asked after the last call"
    assert "too late" not in str(result.new_messages)


def test_a_stopped_turn_takes_nothing(tmp_path: Path) -> None:
    holder: list[AIAgent] = []

    def work(_args: dict[str, Any], _ctx: ToolContext) -> str:
        holder[0].interrupt("stopped by /stop")
        return "half"

    agent = _agent(tmp_path, work)
    holder.append(agent)
    inbox = Inbox([], ["ignored"])
    agent.steer_callback = inbox
    result = agent.run_conversation("!tool work {}")
    assert result.interrupted and inbox.asked == 1 and "ignored" not in str(result.new_messages)


@pytest.mark.parametrize(
    ("next_iteration", "max_iterations", "stopped", "allowed"),
    [(1, 10, False, True), (10, 10, False, True), (11, 10, False, False), (2, 10, True, False)],
)
def test_safe_point_decision(
    next_iteration: int, max_iterations: int, stopped: bool, allowed: bool
) -> None:
    assert (
        may_take_messages(
            next_iteration=next_iteration, max_iterations=max_iterations, stopped=stopped
        )
        is allowed
    )
