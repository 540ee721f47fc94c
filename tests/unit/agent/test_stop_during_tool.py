"""A stop that arrives while a tool runs: the tool sees it, the turn ends with what it had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.sandbox_config import SandboxConfig

REASON = "stopped by /stop (the chat command or POST /v1/sessions/{key}/interrupt)"


def _agent(tmp_path: Path, handler: Any) -> AIAgent:
    registry = ToolRegistry()
    registry.register(
        ToolSpec(
            name="watch",
            description="waits for the turn to be stopped",
            parameters={"type": "object", "properties": {}},
            toolset="test",
            handler=handler,
        )
    )
    env = ToolEnvironment.default(tmp_path, sandbox=SandboxConfig(backend="local"))
    return AIAgent(tool_registry=registry, tool_env=env, skip_context_files=True, skip_memory=True)


def test_a_tool_sees_the_stop_and_its_partial_output_ends_the_turn(tmp_path: Path) -> None:
    seen: list[str | None] = []
    holder: list[AIAgent] = []

    def watch(_args: dict[str, Any], ctx: ToolContext) -> str:
        seen.append(ctx.stopped())
        holder[0].interrupt(REASON)  # the stop arrives while the tool runs
        seen.append(ctx.stopped())
        return "half of the work"

    agent = _agent(tmp_path, watch)
    holder.append(agent)
    result = agent.run_conversation("!tool watch {}")
    assert seen == [None, REASON], "the tool saw no stop, then the stop with its reason"
    assert result.interrupted and result.interrupt_reason == REASON
    assert result.text.startswith(f"(interrupted: {REASON})")
    assert "half of the work" in result.text, "the stopped tool's output is in the reply"
    assert [m["role"] for m in result.new_messages] == ["user", "assistant", "tool"]
    assert agent.api_call_count == 1, "no model call after the stop"


def test_a_turn_that_is_not_stopped_gives_its_tools_no_reason(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def watch(_args: dict[str, Any], ctx: ToolContext) -> str:
        seen.append(ctx.stopped())
        return "done"

    result = _agent(tmp_path, watch).run_conversation("!tool watch {}")
    assert seen == [None] and not result.interrupted
