"""The process tool with real background processes, across agents, tasks and teardown."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from agent.tools import ToolContext, ToolEnvironment, default_registry
from agent.tools.background import PROCESSES_STATE_KEY
from tests.integration.agent.tools.conftest import Call, alive, visible, wait_for
from tests.sandbox_support import processes_with

pytestmark = pytest.mark.integration


def start(call: Call, command: str, task_id: str = "task-1") -> tuple[str, int]:
    result = call("process", task_id, action="start", command=command)
    assert not result.is_error, result.content
    match = re.match(r"started (p\d+) \(pid (\d+)\)", result.content)
    assert match is not None, result.content
    return match.group(1), int(match.group(2))


def poll(call: Call, proc_id: str, task_id: str = "task-1", **extra: object) -> str:
    result = call("process", task_id, action="poll", id=proc_id, **extra)
    assert not result.is_error, result.content
    return result.content


def test_start_list_poll_kill(call: Call) -> None:
    proc_id, pid = start(call, "echo ready; sleep 30")
    assert proc_id == "p1" and alive(pid)
    assert wait_for(lambda: "ready" in poll(call, proc_id))
    assert poll(call, proc_id).startswith("p1: running, pid")
    listing = call("process", action="list").content
    assert re.match(r"p1  running  pid \d+  started .*\$ echo ready; sleep 30$", listing)
    killed = call("process", action="kill", id="p1")
    assert killed.content.startswith("killed p1") and not killed.is_error
    assert not alive(pid)
    assert poll(call, proc_id).startswith("p1: killed")
    again = call("process", action="kill", id="p1")
    assert "p1 is not running here: killed" in again.content


def test_an_exited_process_shows_its_exit_code_and_output(call: Call) -> None:
    proc_id, pid = start(call, "printf 'one\\ntwo\\nthree\\n'; exit 4")
    assert wait_for(lambda: "exited" in poll(call, proc_id))
    content = poll(call, proc_id, lines=2)
    assert content.startswith("p1: exited (code 4)")
    assert content.endswith("--- last 2 lines of output ---\ntwo\nthree")
    assert wait_for(lambda: not alive(pid), timeout=5)  # no zombie left behind either


def test_processes_start_in_the_terminal_cwd_and_env(call: Call, env: ToolEnvironment) -> None:
    call("terminal", command="mkdir -p work && cd work && export MODE=background")
    proc_id, _ = start(call, 'echo "$PWD $MODE"')
    assert wait_for(lambda: "exited" in poll(call, proc_id))
    assert f"{visible(env) / 'work'} background" in poll(call, proc_id)


def test_a_fresh_agent_finds_the_process_still_alive(call: Call, home: Path) -> None:
    """A process started in one agent is found, alive, by a new environment and registry."""
    proc_id, pid = start(call, "sleep 30")
    fresh = ToolContext("task-1", ToolEnvironment.default(home))
    result = default_registry().dispatch("process", {"action": "poll", "id": proc_id}, fresh)
    assert result.content.startswith("p1: running")
    assert alive(pid)


def test_a_process_started_by_another_python_process_is_found(call: Call, home: Path) -> None:
    """Also: with descriptor 3 free, the workspace gets it, and the launcher must not clobber it."""
    command = "echo from-elsewhere-$((6 * 7)) > note && cat note; sleep 30"
    script = textwrap.dedent(
        f"""
        import os
        from agent.tools import ToolContext, ToolEnvironment, default_registry
        env = ToolEnvironment.default({str(home)!r})
        os.closerange(3, 256)
        result = default_registry().dispatch(
            "process", {{"action": "start", "command": {command!r}}}, ToolContext("task-1", env))
        print(result.content)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.startswith("started p1")
    assert wait_for(lambda: "from-elsewhere-42" in poll(call, "p1"))
    assert poll(call, "p1").startswith("p1: running")
    assert call("process", action="kill", id="p1").content.startswith("killed p1")


def test_a_process_from_another_host_is_reported_lost(call: Call, env: ToolEnvironment) -> None:
    proc_id, _ = start(call, "sleep 30")
    table = env.state.load("task-1", PROCESSES_STATE_KEY)
    assert table is not None
    table["items"][proc_id]["host"] = "elsewhere:boot"
    env.state.save("task-1", PROCESSES_STATE_KEY, table)
    assert "lost (started on another host" in poll(call, proc_id)
    assert "is not running here: lost" in call("process", action="kill", id=proc_id).content


def test_a_vanished_process_without_exit_status_is_lost(call: Call, env: ToolEnvironment) -> None:
    proc_id, _ = start(call, "sleep 30")
    table = env.state.load("task-1", PROCESSES_STATE_KEY)
    assert table is not None
    table["items"][proc_id]["proc_start"] = -1  # as if the pid now belonged to someone else
    env.state.save("task-1", PROCESSES_STATE_KEY, table)
    assert "lost (no process" in poll(call, proc_id)


def test_errors_are_clear(call: Call) -> None:
    assert "needs 'command'" in call("process", action="start").content
    assert "needs 'id'" in call("process", action="poll").content
    missing = call("process", action="kill", id="p9")
    assert missing.is_error and "no background process 'p9'" in missing.content
    assert call("process", action="list").content == "no background processes in this session"
    assert "must be one of start, list, poll, kill" in call("process", action="stop").content


def test_teardown_kills_the_tasks_processes_and_removes_its_sandbox_and_state(
    call: Call, env: ToolEnvironment
) -> None:
    _, mine = start(call, "sleep 30", task_id="task-1")
    _, theirs = start(call, "sleep 30", task_id="task-2")
    call("todo", "task-1", action="add", text="x")
    sandbox = env.sandbox_dir("task-1")

    env.teardown("task-1")

    assert not alive(mine)
    assert not sandbox.exists()
    for key in (PROCESSES_STATE_KEY, "terminal", "todo"):
        assert env.state.load("task-1", key) is None
    assert alive(theirs), "teardown of one task must not touch another task's process"
    assert poll(call, "p1", task_id="task-2").startswith("p1: running")
    env.teardown("task-1")  # idempotent


def test_teardown_also_kills_a_process_that_left_its_group(
    call: Call, env: ToolEnvironment
) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    proc_id, _ = start(call, f"m={marker}; setsid sleep $m & echo spawned; wait")
    assert wait_for(lambda: "spawned" in poll(call, proc_id))
    assert wait_for(lambda: len(processes_with(f"sleep {marker}")) == 1)
    env.teardown("task-1")
    assert wait_for(lambda: processes_with(f"sleep {marker}") == [], timeout=5)
