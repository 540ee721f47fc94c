"""Real worker processes for the fault tests: start, kill -9, pause, drain, read their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from cluster.connection import connect
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.session_store import RedisSessionStore
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator

# Fast failure detection for tests: a worker is dead 2 s after its last beat.
FAST = {
    "AGENT_CLUSTER_HEARTBEAT_INTERVAL": "0.5",
    "AGENT_CLUSTER_HEARTBEAT_TTL": "2",
    "AGENT_CLUSTER_LEASE_TTL": "6",
}
FAKE_KEY = "sk-test-fault-suite-0000"


class Fleet:
    """Worker processes of one namespace on one Redis, each with its own log file."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path, **env: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.tmp = tmp
        self.env = {
            **os.environ,
            **FAST,
            "OPENAI_API_KEY": FAKE_KEY,
            "AGENT_CLUSTER_HOME": str(tmp / "home"),
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def settings(self, **overrides: float) -> ClusterSettings:
        """Settings matching the workers' (for a coordinator in the test process)."""
        return ClusterSettings.from_mapping(
            {
                "redis_url": self.redis_url,
                "namespace": self.namespace,
                "heartbeat_interval": 0.5,
                "heartbeat_ttl": 2.0,
                "lease_ttl": 6.0,
                **overrides,
            }
        )

    def start(
        self,
        worker_id: str,
        *,
        concurrency: int = 8,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a worker process; ``env`` adds to (or overrides) the fleet's environment."""
        log = (self.tmp / f"{worker_id}.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "worker",
                "--redis-url",
                self.redis_url,
                "--namespace",
                self.namespace,
                "--id",
                worker_id,
                "--concurrency",
                str(concurrency),
            ],
            env={**self.env, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        key = worker_id
        while key in self.procs and self.procs[key].poll() is None:
            key += "~"  # a second process under a live id (refused): keep the first's handle
        self.procs[key] = proc
        if wait:
            self.wait_live(worker_id)
        return proc

    def membership(self) -> RedisMembership:
        client = connect(self.redis_url)  # a redis+sentinel:// URL too
        return RedisMembership(client, Keyspace(self.namespace), heartbeat_ttl=2.0)

    def wait_live(self, worker_id: str, timeout: float = 20.0) -> None:
        membership = self.membership()
        deadline = time.monotonic() + timeout
        while not membership.is_alive(worker_id):
            proc = self.procs.get(worker_id)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker {worker_id} exited: {self.log(worker_id)[-2000:]}")
            assert time.monotonic() < deadline, f"worker {worker_id} did not register"
            time.sleep(0.05)

    def kill(self, worker_id: str) -> None:
        proc = self.procs[worker_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self, worker_id: str) -> None:
        self.procs[worker_id].send_signal(signal.SIGSTOP)

    def resume(self, worker_id: str) -> None:
        self.procs[worker_id].send_signal(signal.SIGCONT)

    def terminate(self, worker_id: str, timeout: float = 60.0) -> int:
        proc = self.procs[worker_id]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def log(self, worker_id: str) -> str:
        path = self.tmp / f"{worker_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def fleet(redis_url: str, namespace: str, tmp: Path, **env: str) -> Iterator[Fleet]:
    """A fleet whose processes are all stopped at the end, whatever happens."""
    made = Fleet(redis_url, namespace, tmp, **env)
    try:
        yield made
    finally:
        made.stop_all()


@contextmanager
def coordinator(settings: ClusterSettings) -> Iterator[Coordinator]:
    made = Coordinator(settings=settings)
    try:
        yield made
    finally:
        made.close()


def user_texts(client: redis.Redis, namespace: str, session: str) -> list[str]:
    """The user messages of a session's committed history, in order."""
    history = RedisSessionStore(client, Keyspace(namespace)).load(session).history
    return [m["content"] for m in history if m["role"] == "user"]
