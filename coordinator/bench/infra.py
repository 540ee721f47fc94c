"""What a benchmark run stands on: its own redis-server, worker processes, Redis counters.

Every figure of ``agent-cluster bench`` is taken on a redis-server this module
starts on a free loopback port (never a Redis someone else uses: the run reads
``INFO commandstats`` and ``INFO cpu`` and those must count only its own
commands), with worker processes started from the same Python as
``agent-cluster worker``. Everything is stopped in reverse order by the
context managers, even when a figure fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from cluster.connection import connect
from cluster.errors import ConfigError
from cluster.keys import Keyspace
from cluster.membership import RedisMembership

__all__ = [
    "RedisCounters",
    "WorkerFleet",
    "counted_per_turn",
    "free_port",
    "redis_counters",
    "redis_server",
    "replicated_redis",
]

STARTUP_TIMEOUT = 120.0
"""Seconds a redis-server or a worker may take to answer: 4 workers importing at once on
a loaded 2-core machine took over 30 s."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start a redis-server (no persistence) in ``directory`` on a free loopback port and
    wait until it answers.

    Raises:
        ConfigError: ``redis-server`` is not installed, or did not answer in time.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError(
            "agent-cluster bench starts its own redis-server and none is installed: "
            "apt-get install redis-server (or put redis-server on PATH)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                client.ping()
                return proc, port
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    _stop(proc)
                    raise ConfigError(f"redis-server on port {port} did not start") from None
                time.sleep(0.02)
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """Run a private redis-server (no persistence) and yield its URL.

    Raises:
        ConfigError: ``redis-server`` is not installed, or did not answer in time.
    """
    proc, port = _start_redis(directory)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@contextmanager
def replicated_redis(directory: Path) -> Iterator[str]:
    """Run a private primary and one replica of it (loopback, no persistence), wait until
    the replica acknowledges writes, and yield the primary's URL.

    Raises:
        ConfigError: ``redis-server`` is not installed, or a node did not answer in time.
    """
    primary, port = _start_redis(directory / "primary", "--repl-diskless-sync-delay", "0")
    try:
        replica, _ = _start_redis(directory / "replica", "--replicaof", "127.0.0.1", str(port))
    except ConfigError:
        _stop(primary)
        raise
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while client.wait(1, 100) < 1:
            if time.monotonic() > deadline:
                raise ConfigError(f"the replica of the redis-server on port {port} did not sync")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        _stop(replica)
        _stop(primary)


@dataclass(frozen=True)
class RedisCounters:
    """Commands by name and CPU seconds of a Redis server at one instant."""

    calls: Mapping[str, float]
    cpu_seconds: float

    def since(self, before: RedisCounters) -> RedisCounters:
        """What happened between ``before`` and this snapshot."""
        calls = {
            name: count - before.calls.get(name, 0)
            for name, count in self.calls.items()
            if count > before.calls.get(name, 0)
        }
        return RedisCounters(calls=calls, cpu_seconds=self.cpu_seconds - before.cpu_seconds)

    @property
    def total_calls(self) -> float:
        """All commands counted."""
        return sum(self.calls.values())


def counted_per_turn(client: redis.Redis, turns: int, run: Callable[[], object]) -> RedisCounters:
    """What ``run`` (``turns`` turns) cost the Redis of ``client``, per turn."""
    before = redis_counters(client)
    run()
    used = redis_counters(client).since(before)
    return RedisCounters(
        calls={name: count / turns for name, count in used.calls.items()},
        cpu_seconds=used.cpu_seconds / turns,
    )


def redis_counters(client: redis.Redis) -> RedisCounters:
    """Read ``INFO commandstats`` and ``INFO cpu`` (server + its threads, user + system)."""
    stats = client.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_").upper(): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict)
    }
    cpu = client.info("cpu")
    seconds = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return RedisCounters(calls=calls, cpu_seconds=seconds)


class WorkerFleet:
    """Worker processes of one namespace, started with ``agent-cluster worker``.

    Args:
        redis_url: The bench's own Redis.
        namespace: Keyspace of this figure (each figure uses its own).
        home: ``AGENT_CLUSTER_HOME`` of the workers (a temporary directory).
        endpoints: ``AGENT_CLUSTER_ENDPOINTS`` for the workers (YAML/JSON text), if any.
        concurrency: Turns each worker runs at once.
        durability: ``AGENT_CLUSTER_REDIS_DURABILITY`` of the workers (``none``, ``replica``).
    """

    def __init__(
        self,
        *,
        redis_url: str,
        namespace: str,
        home: Path,
        endpoints: str | None = None,
        concurrency: int = 32,
        durability: str = "none",
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self._home = home
        self._concurrency = concurrency
        self._env = {**os.environ, "AGENT_CLUSTER_HOME": str(home), "AGENT_CLUSTER_SANDBOX": "auto"}
        self._env.pop("OPENAI_API_KEY", None)
        self._env.pop("ANTHROPIC_API_KEY", None)
        if endpoints is not None:
            self._env["AGENT_CLUSTER_ENDPOINTS"] = endpoints
        self._env["AGENT_CLUSTER_REDIS_DURABILITY"] = durability
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._client = connect(redis_url)
        self._membership = RedisMembership(self._client, Keyspace(namespace), heartbeat_ttl=5.0)

    def start(self, *worker_ids: str) -> None:
        """Start workers and wait until each is registered and beating."""
        for worker_id in worker_ids:
            log = (self._home / f"{self.namespace}-{worker_id}.log").open("ab")
            with log:
                self._procs[worker_id] = subprocess.Popen(
                    [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url",
                     self.redis_url, "--namespace", self.namespace, "--id", worker_id,
                     "--concurrency", str(self._concurrency)],
                    env=self._env, stdout=subprocess.DEVNULL, stderr=log,
                )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all(self._membership.is_alive(w) for w in worker_ids):
            dead = [w for w in worker_ids if self._procs[w].poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker(s) {dead or list(worker_ids)} did not start; see "
                    f"{self._home}/{self.namespace}-{(dead or list(worker_ids))[0]}.log"
                )
            time.sleep(0.02)

    @property
    def ids(self) -> list[str]:
        """Workers started and not yet stopped."""
        return sorted(w for w, p in self._procs.items() if p.poll() is None)

    def kill(self, worker_id: str) -> None:
        """SIGKILL a worker (a crash: nothing runs its shutdown)."""
        proc = self._procs[worker_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def drain(self, worker_id: str, timeout: float = 120.0) -> int:
        """SIGTERM a worker (a drain) and wait for its exit status."""
        proc = self._procs[worker_id]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def log_of(self, worker_id: str) -> Path:
        """The worker's log file (stderr)."""
        return self._home / f"{self.namespace}-{worker_id}.log"

    def close(self) -> None:
        """Stop every worker still running (a drain each), then the membership client."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._client.close()

    def __enter__(self) -> WorkerFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
