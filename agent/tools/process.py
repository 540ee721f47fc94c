"""The ``process`` tool: start, list, poll and kill a task's background processes.

Processes run detached in their own session and sandbox, in the task's shell
cwd and environment, with output going to a log file in the task's control
directory (outside the sandbox). Their records
live in the task's tool state (see :mod:`agent.tools.background`), so a new
agent for the same task, in this process or another one on the same host,
sees them again; after a move to another host they are reported as ``lost``.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.tools.background import (
    PROCESSES_STATE_KEY,
    launch,
    load_table,
    new_record,
    probe,
    terminate,
)
from agent.tools.host_environment import BASH
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.shell import ShellSession
from agent.tools.workspace_quota import QuotaWatch
from cluster.errors import ToolError

DEFAULT_POLL_LINES = 20
MAX_POLL_LINES = 500
_TAIL_BYTES = 64 * 1024
_MAX_SHOWN = 16 * 1024

PROCESS_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": ["start", "list", "poll", "kill"],
            "description": (
                "start a command, list processes, poll one (status and output), kill one."
            ),
        },
        "command": {
            "type": "string",
            "minLength": 1,
            "description": "For start: the bash command to run in the background.",
        },
        "id": {"type": "string", "description": "For poll and kill: the process id, e.g. 'p1'."},
        "notify_on_complete": {
            "type": "boolean",
            "description": (
                "For start: when the process ends, the session gets a new turn whose "
                "message is its exit status and last output lines (default false)."
            ),
        },
        "lines": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_POLL_LINES,
            "description": (
                f"For poll: how many last lines of output (default {DEFAULT_POLL_LINES})."
            ),
        },
    },
    "required": ["action"],
    "additionalProperties": False,
}


def _tail_lines(path: Path, count: int) -> str:
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - _TAIL_BYTES))
            data = log.read()
    except OSError:
        return "(no output file)"
    lines = data.decode("utf-8", "replace").splitlines()
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first line is probably cut
    text = "\n".join(lines[-count:])
    if len(text) > _MAX_SHOWN:
        text = "[... cut ...]\n" + text[-_MAX_SHOWN:]
    return text or "(no output yet)"


def _started(record: dict[str, Any]) -> str:
    started = float(record.get("started_at", 0.0))
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"started {stamp} ({max(0, int(time.time() - started))} s ago)"


def _find(table: dict[str, Any], args: dict[str, Any], action: str) -> dict[str, Any]:
    proc_id = args.get("id")
    if not proc_id:
        raise ToolError(f"action {action!r} needs 'id' (see action 'list')")
    record = table["items"].get(proc_id)
    if not isinstance(record, dict):
        known = ", ".join(sorted(table["items"])) or "none"
        raise ToolError(f"no background process {proc_id!r} in this session (known: {known})")
    return record


def _start(args: dict[str, Any], ctx: ToolContext) -> str:
    command = args.get("command")
    if not command:
        raise ToolError("action 'start' needs 'command'")
    notify = bool(args.get("notify_on_complete", False))  # the registry checked its type
    watcher = ctx.env.completion_watcher
    if notify and watcher is None:
        raise ToolError(
            "notify_on_complete needs a cluster worker to watch the process (this agent runs "
            "without one); start it without notify_on_complete and poll it instead"
        )
    sandbox, workspace = ctx.env.workspace(ctx.task_id)
    session = ShellSession.load(ctx.env.state, ctx.task_id)
    table = load_table(ctx.env.state, ctx.task_id)
    proc_id = f"p{int(table.get('next_id', 1))}"
    control = ctx.env.control_dir(ctx.task_id)
    log_path, exit_path = control / f"{proc_id}.log", control / f"{proc_id}.exit"
    visible = sandbox.visible_workspace(workspace)
    isolated = sandbox.base_environment(workspace, dict(os.environ)) if sandbox.isolated else None
    cwd = session.visible_cwd(visible) if sandbox.isolated else str(session.working_dir(workspace))
    quota = QuotaWatch(workspace, sandbox.config.limits) if sandbox.isolated else None
    try:
        with sandbox.command(
            workspace,
            [BASH, "-c", command],
            cwd=cwd,
            env=session.environment(visible, isolated),
            file_bytes=quota.file_bytes if quota is not None else None,
        ) as spec:
            pid, pgid = launch(
                spec.argv,
                cwd=spec.cwd,
                pass_fds=spec.pass_fds,
                log_path=log_path,
                exit_path=exit_path,
                watch=quota,
            )
    except OSError as exc:
        raise ToolError(f"could not start {command!r}: {exc}") from exc
    record = new_record(proc_id, command, pid, pgid, log_path, exit_path, time.time())
    record["sandbox"] = sandbox.backend
    record["notify"] = notify
    table["items"][proc_id] = record
    table["next_id"] = int(table.get("next_id", 1)) + 1
    ctx.env.state.save(ctx.task_id, PROCESSES_STATE_KEY, table)
    if notify and watcher is not None:
        watcher.watch(ctx.task_id, record)
    where = "in its own sandbox" if sandbox.isolated else "unsandboxed (local backend)"
    then = (
        "you will get a message with its exit status and output when it ends"
        if notify
        else f"use action 'poll' with id {proc_id!r} to see its status and output"
    )
    return f"started {proc_id} (pid {pid}) {where}: {command}\n{then}"


def completion_message(record: dict[str, Any], *, lines: int = DEFAULT_POLL_LINES) -> str:
    """The message a ``notify_on_complete`` process sends its session when it ended here.

    Args:
        record: The process' record (see :func:`agent.tools.background.new_record`).
        lines: How many last lines of its output to quote.
    """
    return (
        f"[background process {record.get('id')} ended: {probe(record).describe()}]\n"
        f"$ {record.get('command')}\n"
        f"--- last {lines} lines of output ---\n"
        f"{_tail_lines(Path(str(record.get('log'))), lines)}"
    )


def lost_message(record: dict[str, Any], worker_id: str) -> str:
    """The message a ``notify_on_complete`` process sends when the worker watching it is gone."""
    return (
        f"[background process {record.get('id')} lost with its host: worker {worker_id}, "
        "which ran and watched it, stopped (no heartbeat), so its exit status and output "
        f"cannot be collected]\n$ {record.get('command')}\n"
        "Start it again if its result is still needed."
    )


def _list(ctx: ToolContext) -> str:
    items = load_table(ctx.env.state, ctx.task_id)["items"]
    if not items:
        return "no background processes in this session"
    rows = []
    for proc_id in sorted(items, key=lambda key: (len(key), key)):
        record = items[proc_id]
        rows.append(
            f"{proc_id}  {probe(record).describe()}  pid {record.get('pid')}  "
            f"{_started(record)}  $ {record.get('command')}"
        )
    return "\n".join(rows)


def _poll(args: dict[str, Any], ctx: ToolContext) -> str:
    record = _find(load_table(ctx.env.state, ctx.task_id), args, "poll")
    status = probe(record)
    lines = int(args.get("lines", DEFAULT_POLL_LINES))
    return (
        f"{record['id']}: {status.describe()}, pid {record.get('pid')}, {_started(record)}\n"
        f"$ {record.get('command')}\n"
        f"--- last {lines} lines of output ---\n"
        f"{_tail_lines(Path(str(record.get('log'))), lines)}"
    )


def _kill(args: dict[str, Any], ctx: ToolContext) -> str:
    table = load_table(ctx.env.state, ctx.task_id)
    record = _find(table, args, "kill")
    if not terminate(record):
        return f"{record['id']} is not running here: {probe(record).describe()}"
    record["killed"] = True
    ctx.env.state.save(ctx.task_id, PROCESSES_STATE_KEY, table)
    return f"killed {record['id']} (pid {record.get('pid')} and its process group)"


def process_spec() -> ToolSpec:
    """Build the ``process`` tool (toolset ``process``)."""

    def handle(args: dict[str, Any], ctx: ToolContext) -> str:
        action = args["action"]
        if action == "start":
            return _start(args, ctx)
        if action == "list":
            return _list(ctx)
        if action == "poll":
            return _poll(args, ctx)
        return _kill(args, ctx)

    return ToolSpec(
        name="process",
        description=(
            "Manage background processes of this session (servers, watchers, long builds): "
            "'start' a bash command detached (same cwd and env as the terminal), 'list' them, "
            "'poll' one for its status and last output lines, 'kill' one. They keep running "
            "between turns until killed or the session ends. With notify_on_complete the "
            "session is sent a message when the process ends (or is lost with its host)."
        ),
        parameters=PROCESS_PARAMETERS,
        toolset="process",
        handler=handle,
    )


__all__ = ["completion_message", "lost_message", "process_spec"]
