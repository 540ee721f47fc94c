"""Soft release keeps the session's world; hard close tears it down (real processes)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agent import AIAgent
from agent.tools import FileToolStateStore, ToolEnvironment

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(") ")[1][0] != "Z"


def start_background_sleep(agent: AIAgent) -> int:
    result = agent.run_conversation('!tool process {"action": "start", "command": "sleep 120"}')
    match = re.search(r"pid (\d+)", result.new_messages[2]["content"])
    assert match, result.new_messages[2]["content"]
    return int(match.group(1))


@pytest.fixture
def env(tmp_path: Path) -> ToolEnvironment:
    return ToolEnvironment(
        sandbox_root=tmp_path / "sandboxes", state=FileToolStateStore(tmp_path / "state")
    )


def test_soft_release_keeps_processes_and_state_for_the_next_agent(env: ToolEnvironment) -> None:
    agent = AIAgent(session_id="chat-42", tool_env=env, skip_context_files=True)
    pid = start_background_sleep(agent)
    agent.run_conversation("!sh export GREETING=kept && cd /tmp")
    agent.release_clients()
    assert agent.client is None
    assert agent.transcript == []
    assert alive(pid), "soft release must not kill the session's background process"

    successor = AIAgent(session_id="chat-42", tool_env=env, skip_context_files=True)
    try:
        listing = successor.run_conversation('!tool process {"action": "list"}').new_messages[2][
            "content"
        ]
        assert f"pid {pid}" in listing and "running" in listing
        shell = successor.run_conversation("!sh echo $GREETING; pwd").new_messages[2]["content"]
        assert "kept" in shell and "/tmp" in shell
    finally:
        successor.close()
    assert not alive(pid), "hard close kills the session's background processes"
    assert not env.sandbox_path("chat-42").exists(), "hard close removes the sandbox"


def test_close_is_idempotent_and_spares_other_sessions(env: ToolEnvironment) -> None:
    mine = AIAgent(session_id="a", tool_env=env, skip_context_files=True)
    theirs = AIAgent(session_id="b", tool_env=env, skip_context_files=True)
    my_pid = start_background_sleep(mine)
    their_pid = start_background_sleep(theirs)
    mine.close()
    mine.close()
    assert not alive(my_pid)
    assert alive(their_pid), "closing one session never touches another"
    theirs.close()
    assert not alive(their_pid)
