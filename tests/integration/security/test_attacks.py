"""Attacks a hostile chat user (or a prompt-injected model) makes through ``!sh``; each must fail.

Every test talks to one real ``agent-cluster worker`` process (see conftest):
a fake OpenAI key in its environment, a password-protected Redis whose URL
it read from a file, tools in the default ``bwrap`` sandbox.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path

import pytest

from agent.tools.seccomp import SYSCALLS
from agent.tools.state import safe_task_id
from agent.tools.workspace_quota import workspace_usage
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.integration.security.conftest import FAKE_KEY, REDIS_PASSWORD, Target
from tests.sandbox_support import processes_with

pytestmark = pytest.mark.integration

QUOTA = 128 * 1024**2
"""AGENT_CLUSTER_SANDBOX_WORKSPACE_MB of the worker under attack (see conftest)."""


def session() -> str:
    return f"attacker-{uuid.uuid4().hex[:8]}"


def marker() -> str:
    return str(uuid.uuid4().int % 10**6 + 2 * 10**6)


def wait_until(condition: object, timeout: float = 10.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ordinary_commands_work_in_the_sandbox(target: Target) -> None:
    chat = session()
    reply = target.sh(chat, "echo hello from $(pwd) && mkdir -p proj && cd proj && export X=42")
    assert reply.startswith("[terminal] hello from /workspace")
    again = target.sh(chat, 'pwd; echo "X=$X"; python3 -c "print(6 * 7)"')
    assert "/workspace/proj" in again and "X=42" in again and "\n42" in again


def test_the_workers_environment_is_out_of_reach(target: Target) -> None:
    chat = session()
    replies = [
        target.sh(chat, r"tr '\0' '\n' < /proc/$PPID/environ; echo ppid=$PPID"),
        target.sh(chat, r"cat /proc/1/environ /proc/*/environ 2>/dev/null | tr '\0' '\n'"),
        target.sh(chat, "env; set | grep -i key"),
        target.sh(
            chat,
            "grep -rla sk-fake /etc /tmp /workspace /dev /run /var /home /root 2>/dev/null"
            " | head -3; echo searched",
        ),
    ]
    for reply in replies:
        assert FAKE_KEY not in reply and "sk-fake" not in reply
    assert "searched" in replies[3]
    assert all(FAKE_KEY.encode() not in value for value in target.stored_values())


def test_the_workers_argv_and_the_redis_password_are_out_of_reach(target: Target) -> None:
    cmdline = Path(f"/proc/{target.worker.pid}/cmdline").read_bytes()
    assert REDIS_PASSWORD.encode() not in cmdline, "the URL came from a file, not argv"
    chat = session()
    reply = target.sh(
        chat, r"cat /proc/$PPID/cmdline /proc/*/cmdline 2>/dev/null | tr '\0' ' '; ps aux"
    )
    assert (
        REDIS_PASSWORD not in reply and "redis://" not in reply and "coordinator.cli" not in reply
    )
    assert all(REDIS_PASSWORD.encode() not in value for value in target.stored_values())


def test_redis_on_loopback_is_unreachable(target: Target) -> None:
    port = target.redis.port
    reply = target.sh(
        session(),
        f"(exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED) 2>/dev/null || echo BLOCKED; "
        f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2); "
        f"print('CONNECTED')\" 2>/dev/null || echo BLOCKED",
    )
    assert "CONNECTED" not in reply and reply.count("BLOCKED") == 2


def test_another_sessions_files_cannot_be_read(target: Target) -> None:
    victim, attacker = session(), session()
    secret = f"victim-secret-{uuid.uuid4().hex}"
    target.sh(victim, f"echo {secret} > secret.txt")
    victim_dir = target.home / "sandboxes" / safe_task_id(victim)
    assert (victim_dir / "secret.txt").read_text().strip() == secret
    reply = target.sh(
        attacker,
        f"cat ../*/secret.txt {victim_dir}/secret.txt 2>&1; ls -a .. /; "
        "find / -name secret.txt -not -path '/proc/*' 2>/dev/null; echo done",
    )
    assert secret not in reply and "done" in reply


def test_files_cannot_be_planted_for_another_session(target: Target) -> None:
    attacker = session()
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    victim_name = safe_task_id(victim)
    reply = target.sh(
        attacker,
        f"ln -s /workspace ../{victim_name} 2>&1; "
        f"ln -s /workspace {target.home}/sandboxes/{victim_name} 2>&1; echo tried",
    )
    assert "tried" in reply
    sandboxes = target.home / "sandboxes"
    assert not any(entry.is_symlink() for entry in sandboxes.iterdir())
    target.sh(victim, "echo mine > own.txt")
    victim_dir = sandboxes / victim_name
    assert not victim_dir.is_symlink() and (victim_dir / "own.txt").read_text() == "mine\n"
    assert not (sandboxes / safe_task_id(attacker) / "own.txt").exists()


def test_the_worker_cannot_be_killed(target: Target) -> None:
    reply = target.sh(
        session(),
        "kill -9 $PPID; kill -9 1; kill -9 -1; pkill -9 -f agent; pkill -9 python; echo survived",
    )
    assert target.worker_alive()
    assert "hello again" in target.sh(session(), "echo hello again")
    assert "survived" in reply or "[terminal]" in reply


def test_a_fork_bomb_is_contained(target: Target) -> None:
    started = time.monotonic()
    bomb = ":(){ :|:& };:"
    reply = target.terminal(session(), bomb, timeout=5)
    # Either the process limit stops it and it dies out, or the timeout kills the sandbox.
    assert "killed" in reply or "Resource temporarily unavailable" in reply
    assert wait_until(lambda: processes_with(bomb) == [], timeout=15)
    assert target.worker_alive()
    assert "still here" in target.sh(session(), "echo still here")
    assert time.monotonic() - started < 60


def workspace_bound(workspace: Path) -> int:
    """Most the workspace may hold: the quota + 10 % where the kernel enforces it (a volume on
    a root worker); an unprivileged worker's accounting is bounded by how fast it kills."""
    return QUOTA * 11 // 10 if os.path.ismount(workspace) else 2 * 1024**3


def test_the_disk_cannot_be_filled(target: Target) -> None:
    chat = session()
    big = target.terminal(chat, "head -c 200M /dev/zero > big; echo rc=$?; ls -l big", timeout=30)
    assert "rc=153" in big or "File size limit exceeded" in big  # RLIMIT_FSIZE (64 MiB here)
    many = target.terminal(
        chat, "i=0; while true; do i=$((i+1)); head -c 32M /dev/zero > f$i || break; done", 60
    )
    assert "No space left on device" in many or "quota" in many
    workspace = target.home / "sandboxes" / safe_task_id(chat)
    used = workspace_usage(workspace)
    assert used <= workspace_bound(workspace), f"the workspace reached {used} bytes"
    assert "can write" in target.sh(chat, "rm -f f* big; echo can write > ok; cat ok")


def test_parallel_writers_cannot_pass_the_quota(target: Target) -> None:
    chat = session()
    # Issue 16: four of these against a 100 MiB quota left 320 MiB.
    target.terminal(chat, "for i in 1 2 3 4; do head -c 60M /dev/zero > f$i & done; wait", 60)
    workspace = target.home / "sandboxes" / safe_task_id(chat)
    used = workspace_usage(workspace)
    assert used <= QUOTA * 11 // 10, f"the workspace reached {used} bytes"
    assert os.path.ismount(workspace), "a root worker makes the workspace a volume"


def test_a_background_process_cannot_fill_the_disk_either(target: Target) -> None:
    chat = session()
    writer = "i=0; while true; do i=$((i+1)); head -c 32M /dev/zero > g$i || break; done"
    assert "started p1" in target.tool(chat, "process", action="start", command=writer)

    def poll() -> str:
        return target.tool(chat, "process", action="poll", id="p1")

    assert wait_until(lambda: "exited" in poll(), timeout=30)
    assert "No space left on device" in poll() or "killed: the workspace grew past" in poll()
    workspace = target.home / "sandboxes" / safe_task_id(chat)
    used = workspace_usage(workspace)
    assert used <= workspace_bound(workspace), f"the workspace reached {used} bytes"


def test_a_command_cannot_outlive_its_timeout(target: Target) -> None:
    mark = marker()
    reply = target.terminal(
        session(), f"m={mark}; (setsid nohup sleep $m >/dev/null 2>&1 &); sleep $m", timeout=2
    )
    assert "timed out after 2 s" in reply
    assert wait_until(lambda: processes_with(f"sleep {mark}") == [])


def test_background_processes_survive_a_soft_release_and_are_found_again(target: Target) -> None:
    chat = session()
    mark = marker()
    started = target.tool(chat, "process", action="start", command=f"m={mark}; sleep $m")
    assert "started p1" in started and "in its own sandbox" in started
    assert wait_until(lambda: len(processes_with(f"sleep {mark}")) == 1)
    # A config change busts every cached agent: a soft release.
    versions = RedisVersionStore(target.client, Keyspace(target.namespace))
    versions.publish_config({"compression": {"threshold": 0.42}})
    time.sleep(0.5)
    reply = target.send(chat, '!tool process {"action": "poll", "id": "p1"}')
    assert not reply.cache_hit, "a new agent answered"
    assert "p1: running" in reply.text
    assert len(processes_with(f"sleep {mark}")) == 1
    killed = target.tool(chat, "process", action="kill", id="p1")
    assert "killed p1" in killed
    assert wait_until(lambda: processes_with(f"sleep {mark}") == [])


def test_secret_values_are_redacted_from_tool_output(target: Target) -> None:
    """Even a secret that reaches a tool some other way never reaches the model."""
    reply = target.sh(session(), f"echo {FAKE_KEY}")
    assert FAKE_KEY not in reply and "[redacted]" in reply


@pytest.mark.skipif(os.geteuid() != 0, reason="per-session uids are used when the worker is root")
def test_sessions_run_as_their_own_unprivileged_uids(target: Target) -> None:
    first = target.sh(session(), "id -u; grep -E 'CapEff|NoNewPrivs' /proc/self/status")
    second = target.sh(session(), "id -u")
    uid_one = int(first.split()[1])
    uid_two = int(second.split()[1])
    assert uid_one != 0 and uid_two != 0 and uid_one != uid_two
    assert "CapEff:\t0000000000000000" in first and "NoNewPrivs:\t1" in first


def test_kernel_interfaces_a_command_never_needs_are_refused(target: Target) -> None:
    machine = platform.machine()
    if machine not in SYSCALLS:
        pytest.skip(f"no seccomp table for {machine}")
    numbers = SYSCALLS[machine][1]
    probe = "; ".join(
        f"print('{name}', libc.syscall({numbers[name]}, 0, 0, 0, 0), ctypes.get_errno())"
        for name in ("keyctl", "bpf", "unshare", "setns")
    )
    reply = target.sh(
        session(),
        'unshare -U true 2>&1; echo userns=$?; python3 -c "import ctypes; '
        f'libc = ctypes.CDLL(None, use_errno=True); {probe}"; '
        "python3 -c \"import threading, subprocess; subprocess.run(['true']); print('ok')\"",
    )
    assert "userns=1" in reply
    for name in ("keyctl", "bpf", "unshare", "setns"):
        assert f"{name} -1 1" in reply, reply  # EPERM
    assert reply.rstrip().endswith("ok") or "\nok" in reply
