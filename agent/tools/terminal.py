"""The ``terminal`` tool: run a bash command in the task's sandbox, like one long-lived shell.

Each call starts a fresh ``bash`` in its own process group, in the cwd and
environment the task's previous command left behind (see
:mod:`agent.tools.shell`). An ``EXIT`` trap writes ``pwd`` and ``env -0`` to
side files after the command, and they are persisted in the state store, so
``cd`` and ``export`` carry over to the next call, to a new agent for the same
task, and to another worker. Output (stdout and stderr merged) is read
incrementally and capped, keeping the head and the tail. A command that
outlives its timeout is killed with its whole process group; background jobs
a finished command leaves behind are killed too (the ``process`` tool is the
way to keep something running).
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.tools.background import CONTROL_DIR, group_members
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.shell import ShellSession, parse_env_dump
from cluster.errors import ToolError

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
DEFAULT_MAX_OUTPUT = 16 * 1024
# How long to wait for the pipe to drain once the shell itself has exited.
_DRAIN_SECONDS = 2.0

TERMINAL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {
            "type": "string",
            "minLength": 1,
            "description": "Bash command(s) to run. cd and export persist to later calls.",
        },
        "timeout": {
            "type": "number",
            "minimum": 1,
            "maximum": MAX_TIMEOUT,
            "description": f"Seconds before the command is killed (default {DEFAULT_TIMEOUT:g}).",
        },
    },
    "required": ["command"],
    "additionalProperties": False,
}


class CappedOutput:
    """Collects a byte stream keeping at most ``limit`` bytes: the head and the tail."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.total = 0
        self._head = bytearray()
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add ``chunk`` to the stream."""
        self.total += len(chunk)
        room = self.limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            del self._tail[: max(0, len(self._tail) - self.limit // 2)]

    def render(self) -> str:
        """Return the text, with a note saying how many bytes were cut from the middle."""
        if self.total <= self.limit:
            return bytes(self._head).decode("utf-8", "replace")
        head = bytes(self._head[: self.limit - self.limit // 2])
        tail = bytes(self._tail)
        cut = self.total - len(head) - len(tail)
        return (
            head.decode("utf-8", "replace")
            + f"\n[... {cut} bytes of output cut ({self.total} total, limit {self.limit}) ...]\n"
            + tail.decode("utf-8", "replace")
        )


@dataclass(frozen=True)
class CommandOutcome:
    """What running one terminal command produced."""

    exit_code: int | None
    timed_out: bool
    output: str
    strays_killed: bool
    session: ShellSession | None


def _exited_unreaped(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it (its pid keeps the group id reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _has_strays(leader: int) -> bool:
    """True if the (exited, unreaped) shell left live processes in its group."""
    return any(pid != leader for pid in group_members(leader))


def _pump(proc: subprocess.Popen[bytes], output: CappedOutput, timeout: float) -> tuple[bool, bool]:
    """Read the shell's output until it is done; return ``(timed_out, strays_left)``.

    The shell is never reaped here, so its pid (= the group id) stays reserved
    while the caller signals the group.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    timed_out = strays = False
    drain_deadline: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if drain_deadline is None:
                if now >= deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    drain_deadline = now + _DRAIN_SECONDS
                elif _exited_unreaped(proc.pid):
                    # The shell is done; a stray job may still hold the pipe open.
                    strays = _has_strays(proc.pid)
                    _kill_group(proc.pid)
                    drain_deadline = now + _DRAIN_SECONDS
            elif now >= drain_deadline:
                break
            limit = drain_deadline if drain_deadline is not None else deadline
            if selector.select(timeout=max(0.0, min(limit - now, 0.05))):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                output.feed(chunk)
    if drain_deadline is None:
        # EOF came first (e.g. the jobs left behind do not write to the pipe).
        while not _exited_unreaped(proc.pid):
            if time.monotonic() >= deadline:
                return True, False
            time.sleep(0.005)
        strays = _has_strays(proc.pid)
    return timed_out, strays


def run_command(
    command: str,
    *,
    sandbox: Path,
    session: ShellSession,
    timeout: float,
    max_output: int,
) -> CommandOutcome:
    """Run ``command`` with bash in ``session``'s cwd and env; capture the session it leaves."""
    cwd = session.working_dir(sandbox)
    env = session.environment(sandbox)
    env["PWD"] = str(cwd)
    control = sandbox / CONTROL_DIR / "terminal"
    control.mkdir(parents=True, exist_ok=True)
    side = Path(tempfile.mkdtemp(prefix="call-", dir=control))
    cwd_file, env_file = side / "cwd", side / "env"
    script = (
        f"trap '__ac_rc=$?; {{ pwd > {shlex.quote(str(cwd_file))}; "
        f"env -0 > {shlex.quote(str(env_file))}; }} 2>/dev/null; exit $__ac_rc' EXIT\n"
        '__ac_cmd=$1; shift; eval "$__ac_cmd"\n'
    )
    output = CappedOutput(max_output)
    try:
        proc = subprocess.Popen(
            ["bash", "-c", script, "agent-terminal", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with proc:
            try:
                timed_out, strays = _pump(proc, output, timeout)
            finally:
                # Not reaped yet, so the group id cannot have been reused by anyone else.
                _kill_group(proc.pid)
                proc.wait()
        new_session: ShellSession | None = None
        if not timed_out and cwd_file.exists() and env_file.exists():
            new_session = ShellSession.captured(
                sandbox,
                cwd_file.read_text(errors="replace").rstrip("\n"),
                parse_env_dump(env_file.read_bytes()),
            )
        return CommandOutcome(
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            output=output.render(),
            strays_killed=strays,
            session=new_session,
        )
    finally:
        shutil.rmtree(side, ignore_errors=True)


def _format(outcome: CommandOutcome, cwd: Path) -> str:
    body = outcome.output.rstrip("\n") or "(no output)"
    notes = [f"exit code {outcome.exit_code}", f"cwd {cwd}"]
    if outcome.strays_killed:
        notes.append(
            "background jobs it left were killed; use the process tool to keep one running"
        )
    return f"{body}\n[{'; '.join(notes)}]"


def terminal_spec(
    *, default_timeout: float = DEFAULT_TIMEOUT, max_output: int = DEFAULT_MAX_OUTPUT
) -> ToolSpec:
    """Build the ``terminal`` tool (toolset ``terminal``).

    Args:
        default_timeout: seconds a command may run when the call gives no ``timeout``.
        max_output: bytes of output shown; the middle of longer output is cut.
    """

    def handle(args: dict[str, Any], ctx: ToolContext) -> str:
        timeout = float(args.get("timeout", default_timeout))
        sandbox = ctx.env.sandbox_dir(ctx.task_id)
        session = ShellSession.load(ctx.env.state, ctx.task_id)
        try:
            outcome = run_command(
                args["command"],
                sandbox=sandbox,
                session=session,
                timeout=timeout,
                max_output=max_output,
            )
        except OSError as exc:
            raise ToolError(f"could not start bash: {exc}") from exc
        if outcome.timed_out:
            partial = outcome.output.rstrip()
            raise ToolError(
                f"command timed out after {timeout:g} s and was killed with its whole "
                "process group; pass a larger 'timeout' or use the process tool."
                + (f"\noutput before the kill:\n{partial}" if partial else "")
            )
        if outcome.session is not None:
            outcome.session.save(ctx.env.state, ctx.task_id)
            session = outcome.session
        return _format(outcome, session.working_dir(sandbox))

    return ToolSpec(
        name="terminal",
        description=(
            "Run a bash command in this session's sandbox directory and return its output and "
            "exit code. The working directory and exported variables persist between calls. "
            f"Commands are killed after 'timeout' seconds (default {default_timeout:g}); "
            "use the process tool for servers and other long-running commands."
        ),
        parameters=TERMINAL_PARAMETERS,
        toolset="terminal",
        handler=handle,
    )


__all__ = ["CappedOutput", "CommandOutcome", "run_command", "terminal_spec"]
