"""A real Redis primary with one replica (and, on request, one Sentinel), on loopback ports.

Used by the contract tests of the fenced scripts (they also run against a
replicated Redis: a script that reads ``INFO`` or waits for ``WAIT`` must
work there), by the failover tests that promote the replica by hand
(``REPLICAOF NO ONE``) after cutting the replication link, and by the
durability benchmark. Every process is stopped by :meth:`ReplicatedRedis.stop`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer, free_port, start_redis_server

__all__ = ["ReplicatedRedis", "replicated_redis", "start_replicated_redis", "wait_until"]

SERVICE = "ac-primary"
"""The service name the optional Sentinel monitors the primary under."""


def wait_until(check: object, *, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check()`` (a callable) every 20 ms until it is true, else fail the test."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class ReplicatedRedis:
    """A primary and its replica (and maybe a Sentinel watching them)."""

    primary: RedisServer
    replica: RedisServer
    sentinel_port: int | None = None
    _sentinel: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://`` URL of the primary."""
        return self.primary.url

    @property
    def sentinel_url(self) -> str:
        """``redis+sentinel://`` URL naming the Sentinel and the service."""
        assert self.sentinel_port is not None, "started without a Sentinel"
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until the replica has everything the primary has written so far."""
        primary = self.primary.client()
        try:
            wait_until(
                lambda: int(primary.execute_command("WAIT", 1, 100)) >= 1,
                timeout=timeout,
                what="the replica to catch up",
            )
        finally:
            primary.close()

    def cut_replication(self) -> None:
        """Make the replica stop following (and keep what it has): it misses every later write."""
        replica = self.replica.client()
        try:
            replica.execute_command("REPLICAOF", "NO", "ONE")
        finally:
            replica.close()

    def demote_primary(self) -> None:
        """Make the old primary a replica of the promoted one (as Sentinel does when it returns)."""
        old = self.primary.client()
        try:
            old.execute_command("REPLICAOF", self.replica.host, str(self.replica.port))
        finally:
            old.close()

    def stop(self) -> None:
        """Stop every process (Sentinel first, so it does not fail anything over)."""
        if self._sentinel is not None:
            self._sentinel.terminate()
            self._sentinel.wait(timeout=10)
        for server in (self.replica, self.primary):
            server.process.terminate()
            server.process.wait(timeout=10)


def start_replicated_redis(tmp_dir: Path, *, sentinel: bool = False) -> ReplicatedRedis:
    """Start a primary, a replica following it (synced), and optionally one Sentinel."""
    for name in ("primary", "replica"):
        (tmp_dir / name).mkdir(parents=True, exist_ok=True)
    # No diskless-sync delay: the replica's first sync starts at once, not after 5 s.
    primary = start_redis_server(tmp_dir / "primary", "--repl-diskless-sync-delay", "0")
    replica = start_redis_server(
        tmp_dir / "replica",
        "--replicaof",
        primary.host,
        str(primary.port),
        "--repl-diskless-sync-delay",
        "0",
    )
    pair = ReplicatedRedis(primary=primary, replica=replica)
    try:
        pair.wait_synced()
        if sentinel:
            pair.sentinel_port, pair._sentinel = _start_sentinel(tmp_dir / "sentinel", primary)
    except BaseException:
        pair.stop()
        raise
    return pair


def _start_sentinel(directory: Path, primary: RedisServer) -> tuple[int, subprocess.Popen[bytes]]:
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    assert binary is not None  # start_redis_server already checked
    port = free_port()
    config = directory / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {SERVICE} {primary.host} {primary.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    proc = subprocess.Popen(
        [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

    def knows_the_replica() -> bool:
        # A failover needs a replica the Sentinel has seen (it learns them from the primary).
        try:
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            return any(_flags(r) == "slave" for r in replicas)
        except redis.ConnectionError:
            if proc.poll() is not None:
                pytest.fail("redis-server --sentinel exited at start")
            return False

    try:
        wait_until(knows_the_replica, what="the Sentinel to see the replica")
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise
    finally:
        client.close()
    return port, proc


def _flags(entry: dict[bytes, bytes]) -> str:
    return entry.get(b"flags", b"").decode()


@pytest.fixture(scope="session")
def replicated_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedRedis]:
    """One primary + replica pair for the whole session; tests isolate by namespace."""
    pair = start_replicated_redis(tmp_path_factory.mktemp("replicated"))
    yield pair
    pair.stop()
