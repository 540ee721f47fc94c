"""Stopping a turn while its tool runs, through a real worker process and real Redis.

A ``/stop`` (or a newer message that interrupts) kills the running command
with its whole sandbox at once, the turn ends right after, its reply says what
stopped it, and the output the command wrote before the stop is kept: in the
reply and in the committed history the model sees next turn.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.session_store import RedisSessionStore
from tests.sandbox_support import processes_with, require_bwrap
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration

COMMAND_SECONDS = 20


def wait_for_process(marker: str, timeout: float = 30.0) -> None:
    """Wait for the ``sleep`` itself (the shell's command line names it before it runs)."""
    deadline = time.monotonic() + timeout
    while not processes_with(marker, program="sleep"):
        assert time.monotonic() < deadline, f"the command {marker!r} never started"
        time.sleep(0.01)


def long_command(marker: str, pause: str) -> str:
    # ``sleep {pause}`` (a unique duration) runs only once the first echo was written.
    return f"!sh echo {marker} started; sleep {pause}; echo {marker} done"


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [
        ("/stop", "stopped by /stop"),
        ("interrupt", "interrupted by a newer message"),
    ],
)
def test_a_stop_kills_the_running_command_at_once_and_keeps_its_output(
    workers: Fleet,
    slow_model: ProviderSimulator,
    redis_client: redis.Redis,
    namespace: str,
    strategy: str,
    reason: str,
) -> None:
    require_bwrap()
    slow_model.set_latency(ttft=0.0)
    marker = f"mark-{uuid.uuid4().hex[:10]}"
    pause = f"{COMMAND_SECONDS}.{uuid.uuid4().int % 10**6:06d}"
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        running = coord.submit_async("tool", long_command(marker, pause))
        wait_for_process(f"sleep {pause}")
        sent = time.monotonic()
        if strategy == "/stop":
            assert coord.submit("tool", "/stop", timeout=5).raw["stopped"] is True
            newer = None
        else:
            newer = coord.submit_async("tool", "never mind", strategy="interrupt")
        reply = running.result(timeout=30)
        ended = time.monotonic() - sent
        gone = not processes_with(marker) and not processes_with(f"sleep {pause}")
        if newer is not None:
            assert newer.result(timeout=30).raw["turn"] == 2
    assert ended < COMMAND_SECONDS / 4, f"the turn ended {ended:.2f}s after the stop"
    assert gone, "the command's processes were killed with its sandbox"
    assert reply.raw["interrupted"] is True
    assert reason in reply.text, reply.text
    assert f"{marker} started" in reply.text and f"{marker} done" not in reply.text
    history = RedisSessionStore(redis_client, Keyspace(namespace)).load("tool").history
    tool_results = [m["content"] for m in history if m["role"] == "tool"]
    assert len(tool_results) == 1 and f"{marker} started" in tool_results[0], history
    assert reason in tool_results[0], "the model is told the command was stopped, and why"
    print(f"{strategy}: running command killed and turn ended {ended:.3f}s after the request")
