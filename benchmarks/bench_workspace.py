"""What carrying a session's workspace to another host costs: hand-over time and added drain time.

Run: ``.venv/bin/python benchmarks/bench_workspace.py [--runs 5]``

Starts its own redis-server, then:

(a) hand-over: a workspace of 1 MB and of 10 MB (64 KiB files, half random
    bytes, half text) is snapshotted by one "host" (its own home directory)
    and restored by another, through :class:`worker.workspace_handoff.WorkspaceHandoff`
    on that Redis. Measured per size (median of ``--runs``): snapshot (scan,
    read, compress, upload), restore (download, check, write), against an
    empty workspace in the same run;
(b) drain: two real worker processes, each with a home of its own; a turn
    on w0 makes the session's workspace, then N MB are written into it (as a
    background process would, so only the drain's snapshot carries them)
    and w0 gets SIGTERM. Measured: SIGTERM -> exit, against the same drain
    with an empty workspace, and the drain's snapshot step itself (from the
    worker's DEBUG log): a drain also waits on timers (claim loop, heartbeat
    thread), which can hide the step's cost in the total.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.tools import ToolEnvironment  # noqa: E402
from agent.tools.sandbox_config import SandboxConfig  # noqa: E402
from agent.tools.state import safe_task_id  # noqa: E402
from benchmarks.bench_cluster import redis_server  # noqa: E402
from benchmarks.bench_recovery import wait_live  # noqa: E402
from cluster.connection import connect  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.leases import RedisLeaseStore  # noqa: E402
from cluster.ownership import RedisOwnershipStore  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from cluster.tool_state import RedisToolStateStore  # noqa: E402
from cluster.workspace_store import RedisWorkspaceStore  # noqa: E402
from coordinator.ingress import Coordinator  # noqa: E402
from worker.workspace_handoff import WorkspaceHandoff  # noqa: E402

MiB = 1024 * 1024
CAP = 16 * MiB
SIZES = (0, 1 * MiB, 10 * MiB)


def fill(workspace: Path, size: int) -> None:
    """Write ``size`` bytes as 64 KiB files: half random, half repetitive text."""
    workspace.mkdir(parents=True, exist_ok=True)
    chunk = 64 * 1024
    line = b"def handler(event):  # a line of code, repeated\n"
    for i in range(size // chunk):
        data = os.urandom(chunk) if i % 2 else (line * (chunk // len(line) + 1))[:chunk]
        sub = workspace / f"dir{i % 8}"
        sub.mkdir(exist_ok=True)
        (sub / f"file{i}.bin").write_bytes(data)


def handoff(
    url: str, tmp: Path, worker_id: str, namespace: str
) -> tuple[WorkspaceHandoff, ToolEnvironment]:
    client = connect(url)
    keyspace = Keyspace(namespace)
    env = ToolEnvironment.default(tmp / worker_id, sandbox=SandboxConfig(backend="local"))
    made = WorkspaceHandoff(
        tool_env=env,
        store=RedisWorkspaceStore(client, keyspace),
        tool_state=RedisToolStateStore(client, keyspace),
        leases=RedisLeaseStore(client, keyspace),
        ownership=RedisOwnershipStore(client, keyspace),
        worker_id=worker_id,
        mode="snapshot",
        max_bytes=CAP,
        lease_ttl=30.0,
    )
    return made, env


def handoff_run(url: str, tmp: Path, run: int, size: int) -> tuple[float, float, int]:
    namespace = f"hand{run}-{size}"
    session = "s"
    keyspace = Keyspace(namespace)
    client = connect(url)
    ownership = RedisOwnershipStore(client, keyspace)
    leases = RedisLeaseStore(client, keyspace)
    a, env_a = handoff(url, tmp / namespace, "a", namespace)
    b, _env_b = handoff(url, tmp / namespace, "b", namespace)
    fill(env_a.sandbox_dir(session), size)
    ownership.lookup_or_assign(session, eligible=["a"], proposed="a")
    lease = leases.acquire(session, "a", 30.0)
    assert lease is not None
    started = time.perf_counter()
    a.after_turn(lease)
    snapshot = time.perf_counter() - started
    leases.release(lease)
    stored = len(client.hget(keyspace.session(session).workspace, "data") or b"")
    ownership.lookup_or_assign(session, eligible=["b"], proposed="b")
    lease = leases.acquire(session, "b", 30.0)
    assert lease is not None
    digest = client.hget(keyspace.session(session).workspace, "digest")  # comes with the lease
    started = time.perf_counter()
    b.before_turn(lease, digest.decode() if digest is not None else None)
    restore = time.perf_counter() - started
    leases.release(lease)
    return snapshot, restore, stored


def start_worker(url: str, namespace: str, worker_id: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "AGENT_CLUSTER_HOME": str(tmp / f"home-{worker_id}"),
        "AGENT_CLUSTER_SANDBOX": os.environ.get("AGENT_CLUSTER_SANDBOX", "auto"),
        "AGENT_CLUSTER_WORKSPACE_SNAPSHOT_MAX_BYTES": str(CAP),
        "AGENT_CLUSTER_LOG_LEVEL": "DEBUG",  # logs how long each drain step took
    }
    tmp.mkdir(parents=True, exist_ok=True)
    with (tmp / f"{worker_id}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url", url,
             "--namespace", namespace, "--id", worker_id, "--concurrency", "4"],
            env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


def drain_run(url: str, tmp: Path, run: int, size: int) -> tuple[float, float]:
    namespace = f"drain{run}-{size}"
    settings = ClusterSettings(redis_url=url, namespace=namespace)
    w0 = start_worker(url, namespace, "w0", tmp / namespace)
    wait_live(settings, "w0")
    coord = Coordinator(settings=settings)
    try:
        reply = coord.submit("s", "!sh echo start > start.txt", timeout=60)
        assert reply.worker_id == "w0", reply
        fill(tmp / namespace / "home-w0" / "sandboxes" / safe_task_id("s"), size)
        w1 = start_worker(url, namespace, "w1", tmp / namespace)
        wait_live(settings, "w1")
        started = time.perf_counter()
        w0.send_signal(signal.SIGTERM)
        code = w0.wait(timeout=120)
        drained = time.perf_counter() - started
        assert code == 0, (tmp / namespace / "w0.log").read_text()
        files = size // (64 * 1024)
        if files:  # the last file written after the turn is on the new owner's disk
            check = coord.submit("s", f"!sh ls dir{(files - 1) % 8}", timeout=60)
            assert check.worker_id == "w1" and f"file{files - 1}.bin" in check.text, check
        w1.send_signal(signal.SIGTERM)
        w1.wait(timeout=60)
    finally:
        coord.close()
    step = re.search(
        r"drain step 'snapshot idle workspaces' took ([0-9.]+)s",
        (tmp / namespace / "w0.log").read_text(),
    )
    assert step is not None, "the worker logs its drain steps at DEBUG"
    return drained, float(step[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as raw_tmp:
        tmp = Path(raw_tmp)
        with redis_server(tmp) as url:
            print(f"hand-over through Redis (median of {args.runs}; cap {CAP // MiB} MiB)")
            print("| workspace | snapshot ms | restore ms | hand-over ms | stored (compressed) |")
            print("|-----------|-------------|------------|--------------|---------------------|")
            for size in SIZES:
                runs = [handoff_run(url, tmp, r, size) for r in range(args.runs)]
                snap = statistics.median(r[0] for r in runs) * 1000
                rest = statistics.median(r[1] for r in runs) * 1000
                print(
                    f"| {size / MiB:>6.0f} MB | {snap:>11.1f} | {rest:>10.1f} | "
                    f"{snap + rest:>12.1f} | {runs[0][2] / MiB:>15.2f} MB |"
                )
            print()
            print(f"drain of a worker process, SIGTERM -> exit (median of {args.runs})")
            print(
                "| workspace changed since the last turn | drain s | added vs empty | snapshot "
                "step ms |"
            )
            print(
                "|---------------------------------------|---------|----------------|------------------|"
            )
            base = 0.0
            for size in SIZES:
                drains = [drain_run(url, tmp, r, size) for r in range(args.runs)]
                median = statistics.median(d[0] for d in drains)
                step = statistics.median(d[1] for d in drains) * 1000
                if size == 0:
                    base = median
                print(
                    f"| {size / MiB:>34.0f} MB | {median:>7.3f} | {(median - base) * 1000:>11.0f} "
                    f"ms | {step:>16.1f} |"
                )


if __name__ == "__main__":
    main()
