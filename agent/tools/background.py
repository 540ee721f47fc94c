"""The background-process table of a task: launch, probe and kill, all from persisted records.

Nothing here lives in Python objects: each process is a record in the task's
``ToolStateStore`` entry ``"processes"`` (pid, process group, command, log and
exit-status files in the sandbox, start time, host identity and the kernel's
start tick of the pid, which guards against pid reuse). Any agent, in any
process of the same host, can therefore list, poll and kill what an earlier
agent started; on another host the record reads as ``lost``.

A process is launched through a short-lived ``bash`` launcher that starts a
new session (so the process group id is the launcher's pid) and backgrounds
a wrapper; the launcher is reaped at once and the wrapper is re-parented to
init (or the nearest subreaper), so this Python process never holds a zombie.
The launcher and the wrapper run on the host, outside the sandbox, with the
environment the worker builds (never the session's, which only the
sandboxed command loads): the wrapper starts the sandboxed
command (for ``bwrap``, a whole sandbox that dies with the wrapper's group),
appends its output to a log file, kills it if the session's workspace grows
past its quota, and writes its exit status to a file. Log and exit files live
in the task's control directory, outside the sandbox, so a sandboxed process
cannot swap them for symlinks. Every ``local`` tool-started process carries
the task's sandbox path in ``$AGENT_SANDBOX``, so teardown also finds
processes that escaped their process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.tools.host_environment import BASH, host_environment
from agent.tools.shell import SANDBOX_ENV_VAR
from agent.tools.state import ToolStateStore
from agent.tools.workspace_quota import QuotaWatch, disk_reserve

PROCESSES_STATE_KEY = "processes"

# $1 = the descriptor to report the pid on, $2 = exit-status file, $3 = workspace
# whose usage to count ("" for none: no quota, or a volume the kernel limits),
# $4 = its quota in KiB, $5 = directory whose disk to watch ("" for none),
# $6 = free space (KiB) that disk must keep, then the command's argv. Closes
# the report descriptor after use so the command does not inherit it.
_WRAPPER = """\
report=$1; shift
echo "$$" >&"$report"; eval "exec $report>&-"
exit_file=$1; workspace=$2; quota_kb=$3; disk=$4; reserve_kb=$5; shift 5
"$@" & child=$!
if [ -n "$disk" ]; then
    while kill -0 "$child" 2>/dev/null; do
        sleep 0.5
        used=0
        if [ -n "$workspace" ]; then
            used=$(du -skx -- "$workspace" 2>/dev/null | cut -f1)
        fi
        free=$(df -Pk -- "$disk" 2>/dev/null | awk 'NR == 2 {print $4}')
        why=""
        if [ "${used:-0}" -gt "$quota_kb" ]; then
            why="the workspace grew past its quota of $((quota_kb / 1024)) MiB"
        elif [ "${free:-$reserve_kb}" -lt "$reserve_kb" ]; then
            why="the disk is nearly full"
        fi
        if [ -n "$why" ]; then
            echo "[killed: $why]"
            kill -KILL "$child" 2>/dev/null
            break
        fi
    done
fi
wait "$child"; rc=$?
printf "%s\\n" "$rc" > "$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"
exit "$rc"
"""
# $1 = log file, $2 = report descriptor (above every descriptor handed to the
# command, so the redirection cannot clobber one), then the wrapper's argv.
_LAUNCHER = 'log=$1; report=$2; shift 2; eval \'"$@" \'"$report"\'>&1 >>"$log" 2>&1 </dev/null &\''


ProcessState = Literal["running", "exited", "killed", "lost"]


class CompletionWatcher(Protocol):
    """Who tells a session when a process it started with ``notify_on_complete`` ends.

    A cluster worker gives one per turn (:class:`worker.background_notices.BackgroundNotices`);
    without one (the single-process chat) the option is refused with a clear error.
    """

    def watch(self, task_id: str, record: dict[str, Any]) -> None:
        """Report ``record``'s process to the task's session once it ends (or is lost)."""
        ...


@dataclass(frozen=True)
class ProcessStatus:
    """What a probe found out about a recorded process.

    Attributes:
        state: ``running``, ``exited`` (with ``exit_code``), ``killed`` (by the
            process tool) or ``lost`` (not found on this host, no exit status).
        exit_code: the command's exit status when ``state == "exited"``.
        detail: a short human explanation for ``lost``.
    """

    state: ProcessState
    exit_code: int | None = None
    detail: str = ""

    def describe(self) -> str:
        """Return e.g. ``running``, ``exited (code 0)`` or ``lost (...)``."""
        if self.state == "exited":
            return f"exited (code {self.exit_code})"
        if self.detail:
            return f"{self.state} ({self.detail})"
        return self.state


@dataclass(frozen=True)
class _ProcStat:
    state: str
    pgrp: int
    start_ticks: int


def host_identity() -> str:
    """Return ``hostname:boot-id``: pids mean something only on the same host and boot."""
    boot_id = ""
    with contextlib.suppress(OSError):
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}:{boot_id}"


def _read_stat(pid: int) -> _ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return _ProcStat(state=fields[0], pgrp=int(fields[2]), start_ticks=int(fields[19]))
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> list[int]:
    """Return the live (non-zombie) pids of process group ``pgid`` on this host."""
    members: list[int] = []
    # Closed however the walk ends (a process vanishing mid-walk may raise).
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = _read_stat(int(entry.name))
                if stat is not None and stat.pgrp == pgid and stat.state not in ("Z", "X"):
                    members.append(int(entry.name))
    return members


def _read_exit_code(record: dict[str, Any]) -> int | None:
    try:
        return int(Path(record["exit_file"]).read_text().strip())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_running(pid: int) -> bool:
    stat = _read_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def _is_alive(record: dict[str, Any]) -> bool:
    """True if the record's pid is a live (non-zombie) process that is still the one we started."""
    pid = record.get("pid")
    if not isinstance(pid, int):
        return False
    stat = _read_stat(pid)
    if stat is None:
        return False
    if stat.state in ("Z", "X"):
        return False
    expected = record.get("proc_start")
    return expected is None or stat.start_ticks == expected


def probe(record: dict[str, Any]) -> ProcessStatus:
    """Find out what became of a recorded process."""
    code = _read_exit_code(record)
    if code is not None:
        return ProcessStatus("exited", exit_code=code)
    if record.get("host") != host_identity():
        return ProcessStatus("lost", detail=f"started on another host ({record.get('host')})")
    if _is_alive(record):
        return ProcessStatus("running")
    code = _read_exit_code(record)  # it may have finished while we looked
    if code is not None:
        return ProcessStatus("exited", exit_code=code)
    if record.get("killed"):
        return ProcessStatus("killed")
    return ProcessStatus("lost", detail=f"no process {record.get('pid')} and no exit status")


def launch(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    pass_fds: Sequence[int],
    log_path: Path,
    exit_path: Path,
    watch: QuotaWatch | None = None,
) -> tuple[int, int]:
    """Start ``argv`` detached in its own session; return ``(pid, pgid)`` of its wrapper.

    Args:
        argv: the (sandboxed) command.
        cwd: host working directory (``None``: inherit; a sandbox enters its own).
        pass_fds: descriptors the command needs (its environment, the workspace...).
        log_path: where output is appended.
        exit_path: where the exit status is written.
        watch: the session's quota, to kill the command when the workspace
            outgrows it (accounting) or the disk is down to its reserve.

    Raises:
        OSError: bash could not be started or did not report the pid.
    """
    counted = str(watch.workspace) if watch is not None and watch.quota is not None else ""
    quota = watch.quota if watch is not None and watch.quota is not None else 0
    disk = watch.disk if watch is not None else None
    report_fd = max([2, *pass_fds]) + 1
    launcher = subprocess.Popen(
        [
            BASH,
            "-c",
            _LAUNCHER,
            "agent-launcher",
            str(log_path),
            str(report_fd),
            BASH,
            "-c",
            _WRAPPER,
            "agent-process",
            str(report_fd),
            str(exit_path),
            counted,
            str(max(1, quota // 1024)),
            str(disk or ""),
            str(disk_reserve(disk) // 1024 if disk is not None else 0),
            *argv,
        ],
        cwd=cwd,
        env=host_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
    )
    try:
        out, err = launcher.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.communicate()
        raise OSError("the process launcher did not report a pid within 10 s") from None
    try:
        pid = int(out.decode().strip())
    except ValueError:
        raise OSError(
            "the process launcher failed: "
            f"{err.decode(errors='replace').strip() or 'no pid reported'}"
        ) from None
    return pid, launcher.pid


def new_record(
    proc_id: str,
    command: str,
    pid: int,
    pgid: int,
    log_path: Path,
    exit_path: Path,
    started_at: float,
) -> dict[str, Any]:
    """Build the JSON-safe record of a just-launched process."""
    stat = _read_stat(pid)
    return {
        "id": proc_id,
        "pid": pid,
        "pgid": pgid,
        "command": command,
        "log": str(log_path),
        "exit_file": str(exit_path),
        "started_at": started_at,
        "host": host_identity(),
        "proc_start": stat.start_ticks if stat is not None else None,
        "killed": False,
    }


def _wait_until_dead(record: dict[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_alive(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def terminate(record: dict[str, Any], *, grace: float = 2.0) -> bool:
    """SIGTERM the process group of a running record, SIGKILL after ``grace`` seconds.

    A ``bwrap`` record's group (its host-side wrapper and the sandbox's monitor)
    is SIGKILLed at once, which takes the whole sandbox down.

    Only signals a group whose leader is verifiably the process we started.
    Returns True if this call killed it (False: it was not running here).
    """
    if record.get("host") != host_identity() or not _is_alive(record):
        return False
    stat = _read_stat(int(record["pid"]))
    pgid = int(record.get("pgid", 0))
    if stat is None or pgid <= 1 or stat.pgrp != pgid:
        return False
    steps = [(signal.SIGTERM, grace), (signal.SIGKILL, 5.0)]
    if record.get("sandbox") == "bwrap":
        # The sandbox dies with its bwrap monitor only when that is SIGKILLed
        # (--die-with-parent); a SIGTERM could leave the sandbox running.
        steps = steps[1:]
    for sig, wait in steps:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if _wait_until_dead(record, wait):
            break
    return True


def load_table(store: ToolStateStore, task_id: str) -> dict[str, Any]:
    """Return the task's process table ``{"next_id": int, "items": {id: record}}``."""
    raw = store.load(task_id, PROCESSES_STATE_KEY)
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), dict):
        return {"next_id": 1, "items": {}}
    return raw


def _processes_marked_with(sandbox: Path) -> Iterator[int]:
    """Pids on this host whose environment carries the task's sandbox marker."""
    marker = f"{SANDBOX_ENV_VAR}={sandbox}".encode()
    me = os.getpid()
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                environ = Path(entry.path, "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                yield int(entry.name)


def kill_task_processes(store: ToolStateStore, task_id: str, sandbox: Path) -> int:
    """Kill everything the task started that still runs on this host; return how many.

    First the recorded background processes (whole process groups, verified
    by start tick), then any stray process still carrying the task's sandbox
    marker in its environment (e.g. a daemon that left its process group).
    """
    killed = 0
    for record in load_table(store, task_id)["items"].values():
        if isinstance(record, dict) and terminate(record):
            killed += 1
    strays = list(_processes_marked_with(sandbox))
    for pid in strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_is_running(pid) for pid in strays):
        time.sleep(0.01)
    return killed


__all__ = [
    "PROCESSES_STATE_KEY",
    "CompletionWatcher",
    "ProcessState",
    "ProcessStatus",
    "group_members",
    "host_identity",
    "kill_task_processes",
    "launch",
    "load_table",
    "new_record",
    "probe",
    "terminate",
]
