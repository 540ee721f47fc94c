"""The ``terminal`` tool: run a bash command in the task's sandbox, like one long-lived shell.

Each call starts a fresh ``bash`` in a sandbox of its own (see
:mod:`agent.tools.sandbox`), in the cwd and environment the task's previous
command left behind (see :mod:`agent.tools.shell`); that environment is
loaded inside the sandbox, while ``bwrap`` itself starts with the worker's own
(:func:`agent.tools.host_environment.host_environment`). An ``EXIT`` trap writes
the stray-process count, ``$PWD`` and ``env -0`` to a pipe the worker reads
(never to a file in the workspace, which the command could swap for a
symlink), and they are persisted in the state store, so ``cd`` and ``export``
carry over to the next call, to a new agent for the same task, and to another
worker. Output (stdout and stderr merged) is read incrementally and capped,
keeping the head and the tail. A command that outlives its timeout is killed
with its whole sandbox (``local``: its process group); so are background jobs
a finished command leaves behind (the ``process`` tool is the way to keep
something running), and a command that grows the workspace past its quota or
leaves the disk nearly full (see :mod:`agent.tools.workspace_quota`; where the
workspace is a volume the kernel refuses writes past the quota instead).
A stopped turn (``/stop``, an API interrupt, a
newer message, a drain's cut-off) kills the running command with its whole
sandbox within a poll interval (50 ms); the output it wrote so far is kept.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.tools.background import group_members
from agent.tools.host_environment import BASH, host_environment
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.sandbox import Sandbox
from agent.tools.shell import ShellSession, parse_env_dump
from agent.tools.workspace_quota import QuotaWatch
from cluster.errors import ToolError

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
DEFAULT_MAX_OUTPUT = 16 * 1024
# How long to wait for the pipe to drain once the shell itself has exited.
_DRAIN_SECONDS = 2.0
# The shell state a command leaves (count, cwd, env) is at most this big.
_MAX_STATE_BYTES = 1024 * 1024
# $1 = command, $2 = the state pipe's fd, $3 = 1 to count strays. The trap
# reports: processes left in the sandbox's PID namespace besides pid 1 and the
# shell (no fork needed; only in a sandbox, where /proc is the sandbox's own),
# then the cwd and the environment.
_SCRIPT = (
    "__ac_fd=$2; __ac_scan=$3\n"
    'trap \'__ac_rc=$?; __ac_n=0; [ "$__ac_scan" = 1 ] && for __ac_p in /proc/[0-9]*; do '
    "case ${__ac_p#/proc/} in 1|$$) ;; *) __ac_n=$((__ac_n+1)) ;; esac; done; "
    '{ printf "%s\\0%s\\0" "$__ac_n" "$PWD"; env -0; } >&"$__ac_fd" 2>/dev/null; '
    "exit $__ac_rc' EXIT\n"
    '__ac_cmd=$1; shift 3; eval "$__ac_cmd"\n'
)

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
    """What running one terminal command produced.

    Attributes:
        exit_code: the shell's exit status (``None`` when it was killed).
        timed_out: killed for outliving its timeout.
        output: stdout and stderr merged, capped.
        strays_killed: processes it left behind were killed.
        session: the shell session it left (``None`` when it did not report one).
        limit_hit: why it was killed for a resource limit (workspace quota, disk), or "".
        stopped: why it was killed because its turn was stopped (a /stop, a newer message), or "".
        seconds: how long it ran.
    """

    exit_code: int | None
    timed_out: bool
    output: str
    strays_killed: bool
    session: ShellSession | None
    limit_hit: str = ""
    stopped: str = ""
    seconds: float = 0.0


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


@dataclass
class _Pumped:
    timed_out: bool = False
    strays: bool = False
    limit_hit: str = ""
    stopped: str = ""


def _never_stopped() -> str | None:
    return None


def _must_kill(
    result: _Pumped,
    now: float,
    deadline: float,
    quota: QuotaWatch | None,
    stopped: Callable[[], str | None],
) -> bool:
    """Whether the command must be killed now (its turn stopped, timeout, limit); records why."""
    reason = stopped()
    if reason:
        result.stopped = reason
        return True
    problem = quota.check(now) if quota is not None else ""
    if now >= deadline or problem:
        result.timed_out = not problem
        result.limit_hit = problem
        return True
    return False


def _pump(
    proc: subprocess.Popen[bytes],
    output: CappedOutput,
    state: bytearray,
    state_fd: int,
    timeout: float,
    quota: QuotaWatch | None,
    stopped: Callable[[], str | None] = _never_stopped,
) -> _Pumped:
    """Read output and shell state until the command is done, timed out or stopped.

    The shell is never reaped here, so its pid (= the group id) stays reserved
    while the caller signals the group.
    """
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    result = _Pumped()
    drain_deadline: float | None = None
    open_fds = {out_fd, state_fd}
    with selectors.DefaultSelector() as selector:
        for fd in open_fds:
            selector.register(fd, selectors.EVENT_READ)
        while open_fds:
            now = time.monotonic()
            if drain_deadline is None:
                if _must_kill(result, now, deadline, quota, stopped):
                    _kill_group(proc.pid)
                    drain_deadline = now + _DRAIN_SECONDS
                elif _exited_unreaped(proc.pid):
                    # The shell is done; a stray job may still hold the pipe open.
                    result.strays = _has_strays(proc.pid)
                    _kill_group(proc.pid)
                    drain_deadline = now + _DRAIN_SECONDS
            elif now >= drain_deadline:
                break
            limit = drain_deadline if drain_deadline is not None else deadline
            for key, _ in selector.select(timeout=max(0.0, min(limit - now, 0.05))):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                elif fd == out_fd:
                    output.feed(chunk)
                elif len(state) < _MAX_STATE_BYTES:
                    state += chunk[: _MAX_STATE_BYTES - len(state)]
    if drain_deadline is None:
        # EOF came first (e.g. the jobs left behind do not write to the pipes).
        _wait_for_exit(proc.pid, result, deadline, stopped)
    return result


def _wait_for_exit(
    pid: int, result: _Pumped, deadline: float, stopped: Callable[[], str | None]
) -> None:
    """Wait (unreaped) for the shell to exit, its deadline or a stop; records which."""
    while not _exited_unreaped(pid):
        reason = stopped()
        if reason:
            result.stopped = reason
            return
        if time.monotonic() >= deadline:
            result.timed_out = True
            return
        time.sleep(0.005)
    result.strays = _has_strays(pid)


def _parse_state(data: bytes) -> tuple[int, str, dict[str, str]] | None:
    """Split the trap's report into (stray count, cwd, env); ``None`` if incomplete."""
    count, sep, rest = data.partition(b"\0")
    cwd, sep2, env = rest.partition(b"\0")
    if not (sep and sep2) or not count.isdigit():
        return None
    return int(count), cwd.decode("utf-8", "replace"), parse_env_dump(env)


def run_command(
    command: str,
    *,
    sandbox: Sandbox,
    workspace: Path,
    session: ShellSession,
    timeout: float,
    max_output: int,
    stopped: Callable[[], str | None] = _never_stopped,
) -> CommandOutcome:
    """Run ``command`` with bash in the session's sandbox, cwd and env; capture what it leaves.

    Args:
        command: the bash command line.
        sandbox: the backend to run it in.
        workspace: the session's host workspace directory.
        session: the shell session the previous command left.
        timeout: seconds before the command is killed with its sandbox.
        max_output: bytes of output kept.
        stopped: polled while the command runs; a reason (the turn was stopped)
            kills it with its sandbox at once.
    """
    visible = sandbox.visible_workspace(workspace)
    isolated = sandbox.base_environment(workspace, dict(os.environ)) if sandbox.isolated else None
    env = session.environment(visible, isolated)
    cwd = session.visible_cwd(visible) if sandbox.isolated else str(session.working_dir(workspace))
    env["PWD"] = cwd
    output, state = CappedOutput(max_output), bytearray()
    quota = QuotaWatch(workspace, sandbox.config.limits) if sandbox.isolated else None
    state_r, state_w = os.pipe()
    began = time.monotonic()
    try:
        scan = "1" if sandbox.isolated else "0"
        argv = [BASH, "-c", _SCRIPT, "agent-terminal", command, str(state_w), scan]
        file_bytes = quota.file_bytes if quota is not None else None
        with sandbox.command(workspace, argv, cwd=cwd, env=env, file_bytes=file_bytes) as spec:
            proc = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=host_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(*spec.pass_fds, state_w),
                start_new_session=True,
            )
        os.close(state_w)
        state_w = -1
        with proc:
            try:
                pumped = _pump(proc, output, state, state_r, timeout, quota, stopped)
            finally:
                # Not reaped yet, so the group id cannot have been reused by anyone else.
                _kill_group(proc.pid)
                proc.wait()
    finally:
        os.close(state_r)
        if state_w >= 0:
            os.close(state_w)
    killed = pumped.timed_out or bool(pumped.limit_hit) or bool(pumped.stopped)
    report = None if killed else _parse_state(bytes(state))
    new_session: ShellSession | None = None
    strays = pumped.strays
    if report is not None:
        leftover, final_cwd, final_env = report
        new_session = ShellSession.captured(visible, final_cwd, final_env, isolated)
        strays = strays or (sandbox.isolated and leftover > 0)
    return CommandOutcome(
        exit_code=None if killed else proc.returncode,
        timed_out=pumped.timed_out,
        output=output.render(),
        strays_killed=strays,
        session=new_session,
        limit_hit=pumped.limit_hit,
        stopped=pumped.stopped,
        seconds=time.monotonic() - began,
    )


def _format(outcome: CommandOutcome, cwd: str) -> str:
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
        sandbox, workspace = ctx.env.workspace(ctx.task_id)
        session = ShellSession.load(ctx.env.state, ctx.task_id)
        try:
            outcome = run_command(
                args["command"],
                sandbox=sandbox,
                workspace=workspace,
                session=session,
                timeout=timeout,
                max_output=max_output,
                stopped=ctx.stopped,
            )
        except OSError as exc:
            raise ToolError(f"could not start bash: {exc}") from exc
        what = "sandbox" if sandbox.isolated else "process group"
        partial = outcome.output.rstrip()
        tail = f"\noutput before the kill:\n{partial}" if partial else ""
        if outcome.timed_out:
            raise ToolError(
                f"command timed out after {timeout:g} s and was killed with its whole {what}; "
                "pass a larger 'timeout' or use the process tool." + tail
            )
        if outcome.limit_hit:
            raise ToolError(f"command was killed with its whole {what}: {outcome.limit_hit}" + tail)
        if outcome.stopped:
            raise ToolError(
                f"command was killed with its whole {what} after {outcome.seconds:.1f} s: "
                f"{outcome.stopped}" + tail
            )
        if outcome.session is not None:
            outcome.session.save(ctx.env.state, ctx.task_id)
            session = outcome.session
        visible = sandbox.visible_workspace(workspace)
        cwd = (
            session.visible_cwd(visible)
            if sandbox.isolated
            else str(session.working_dir(workspace))
        )
        return _format(outcome, cwd)

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
