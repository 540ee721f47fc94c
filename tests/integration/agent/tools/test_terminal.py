"""The terminal tool with real bash: persistence, timeouts, output cap."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from agent.tools import ToolContext, ToolEnvironment, ToolRegistry, default_registry
from agent.tools.terminal import terminal_spec
from tests.integration.agent.tools.conftest import Call, visible, wait_for
from tests.sandbox_support import processes_with

pytestmark = pytest.mark.integration


def output_of(call: Call, command: str, task_id: str = "task-1") -> str:
    result = call("terminal", task_id, command=command)
    assert not result.is_error, result.content
    return result.content


def test_runs_in_the_sandbox_and_reports_the_exit_code(call: Call, env: ToolEnvironment) -> None:
    content = output_of(call, "pwd; echo oops >&2; exit 3")
    sandbox = visible(env)
    assert content.splitlines()[0] == str(sandbox)
    assert "oops" in content
    assert content.endswith(f"[exit code 3; cwd {sandbox}]")


def test_cwd_and_exports_persist_across_calls_and_fresh_agents(
    call: Call, env: ToolEnvironment, home: Path
) -> None:
    output_of(call, "mkdir -p proj/src && cd proj/src && export GREETING='hello there'")
    output_of(call, "unset PAGER; LOCAL_ONLY=1")  # not exported: must not persist
    # A different registry, context and environment object for the same task id.
    registry = default_registry()
    fresh = ToolContext("task-1", ToolEnvironment.default(home))
    result = registry.dispatch(
        "terminal",
        {
            "command": 'pwd; echo "$GREETING"; echo "pager=${PAGER-unset}"; '
            'echo "local=${LOCAL_ONLY-unset}"'
        },
        fresh,
    )
    lines = result.content.splitlines()
    assert lines[:4] == [
        str(visible(env) / "proj" / "src"),
        "hello there",
        "pager=unset",
        "local=unset",
    ]


def test_state_survives_exit_in_the_middle_of_a_command(call: Call) -> None:
    output_of(call, "cd /tmp && export AFTER_EXIT=yes && exit 0; echo never")
    assert output_of(call, 'pwd; echo "$AFTER_EXIT"').splitlines()[:2] == ["/tmp", "yes"]


def test_sessions_are_per_task(call: Call, env: ToolEnvironment) -> None:
    output_of(call, "export ONLY_ONE=1; mkdir sub; cd sub", task_id="task-1")
    content = output_of(call, 'pwd; echo "${ONLY_ONE-none}"', task_id="task-2")
    assert content.splitlines()[:2] == [str(visible(env, "task-2")), "none"]


def test_worker_secrets_do_not_reach_the_shell(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    assert "sk-ant-secret" not in output_of(call, "env")


def test_a_timed_out_command_is_killed_with_everything_it_started(
    env: ToolEnvironment, backend: str
) -> None:
    """bwrap kills the whole sandbox, even a process that left the group; local, the group."""
    escaped = "setsid sleep $m & " if backend == "bwrap" else ""
    registry = ToolRegistry()
    registry.register(terminal_spec(default_timeout=0.5))
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    result = registry.dispatch(
        "terminal",
        {"command": f"echo before; m={marker}; sleep $m & {escaped}wait"},
        ToolContext("task-1", env),
    )
    assert result.is_error
    assert "timed out after 0.5 s and was killed" in result.content
    assert "before" in result.content
    assert wait_for(lambda: processes_with(f"sleep {marker}") == [], timeout=5)


def test_background_jobs_left_by_a_command_are_killed(call: Call) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    content = output_of(call, f"m={marker}; sleep $m >/dev/null 2>&1 & echo started")
    assert "background jobs it left were killed" in content
    assert wait_for(lambda: processes_with(f"sleep {marker}") == [], timeout=5)


def test_output_is_capped_and_says_how_much_was_cut(env: ToolEnvironment) -> None:
    registry = ToolRegistry()
    registry.register(terminal_spec(max_output=1000))
    result = registry.dispatch("terminal", {"command": "seq 1 20000"}, ToolContext("task-1", env))
    assert not result.is_error
    match = re.search(
        r"\[\.\.\. (\d+) bytes of output cut \((\d+) total, limit 1000\) \.\.\.\]", result.content
    )
    assert match is not None
    assert int(match.group(2)) == len("\n".join(str(i) for i in range(1, 20001))) + 1
    assert result.content.startswith("1\n2\n3\n")
    assert "19999\n20000" in result.content
    assert len(result.content) < 1300


def test_timeout_argument_is_validated(call: Call) -> None:
    result = call("terminal", command="true", timeout=0)
    assert result.is_error and "'timeout' must be >= 1" in result.content
