"""A replicated Redis with Sentinel on loopback ports, and the faults a failover test needs.

:class:`SentinelTopology` starts one primary, two replicas and three Sentinels
(``redis-server`` and ``redis-server --sentinel`` with configs generated in a
directory of their own, free loopback ports, never 6379), waits until the
Sentinels agree on the primary and know both replicas and each other, and
exposes :attr:`SentinelTopology.url` (``redis+sentinel://h:p,h:p,h:p/service``).

Faults:

* :meth:`~SentinelTopology.lag_replicas` cuts the replication link so the
  replicas miss what the primary acknowledges from then on. Replicas log in
  as the ACL user ``replicator``; the primary disables that user and kills its
  connections, so the replicas cannot reconnect. (On loopback a replica is
  never behind: a plain kill -9 of the primary loses nothing, and a SIGSTOPped
  replica still receives into its socket buffer.) The promoted replica then
  really misses the acknowledged writes.
* :meth:`~SentinelTopology.kill_primary`: kill -9.
* :meth:`~SentinelTopology.pause_primary` / :meth:`~SentinelTopology.resume`:
  SIGSTOP / SIGCONT. Sentinel demotes a resumed old primary only at its next
  check of it (up to ~10 s after it comes back); until then it still takes
  writes from clients connected to it, writes the demotion then throws away.
* :meth:`~SentinelTopology.wait_for_failover`: polls every Sentinel's
  ``get-master-addr-by-name`` until all name a new primary that says it is
  one; returns the seconds since the fault.
* :meth:`~SentinelTopology.rejoin`: a killed node comes back (same port, no
  data) as a replica of the current primary, so the next failover has two
  replicas again.

Short Sentinel timings (``down-after-milliseconds`` 1000, ``failover-timeout``
2000) make a failover take about 2-5 s on loopback.

:class:`ReplicatedRedis` is the small topology of the same kind: a primary and
one replica (and, on request, one Sentinel), for the contract tests of the
fenced scripts (they also run against a replicated Redis: a script that reads
``INFO`` or waits for ``WAIT`` must work there), the failover tests that
promote the replica by hand (``REPLICAOF NO ONE``) after cutting the
replication link, and the durability benchmark. Every process is stopped by
:meth:`ReplicatedRedis.stop`.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer, free_port, start_redis_server

__all__ = [
    "FailoverReport", "RedisNode", "ReplicatedRedis", "SERVICE", "SentinelTopology",
    "replicated_redis", "sentinel_topology", "start_replicated_redis", "wait_until",
]  # fmt: skip

Address = tuple[str, int]
HOST = "127.0.0.1"
SERVICE = "agent-cluster"
REPLICATION_USER = "replicator"
# A test-only password between the nodes of a throwaway topology (never a real secret).
_REPLICATION_PASSWORD = "replication-test-only"
_START_TIMEOUT = 15.0


@dataclass
class RedisNode:
    """One ``redis-server`` (data node or Sentinel) of the topology."""

    name: str
    port: int
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def start(self, binary: str) -> None:
        self.process = subprocess.Popen(
            [binary, *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        probe = self.client(timeout=1.0)
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} on port {self.port} did not start; see {self.log}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class FailoverReport:
    """A completed failover: who was primary, who is now, and how long it took."""

    old: Address
    new: Address
    seconds: float


class SentinelTopology:
    """One primary, two replicas, three Sentinels on loopback; see the module docstring.

    Args:
        directory: Configs, logs and the nodes' working directories go here.
        service: The name the Sentinels monitor the primary under.
        down_after_ms: Sentinel's ``down-after-milliseconds``.
        failover_timeout_ms: Sentinel's ``failover-timeout``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service: str = SERVICE,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        ports = _distinct_free_ports(6)
        self.nodes = [self._data_node(f"redis-{i}", ports[i]) for i in range(3)]
        # Each Sentinel's id and its peers are written in its config, so the three know
        # each other from the start instead of after rounds of hello messages.
        self._sentinel_ids = [secrets.token_hex(20) for _ in range(3)]
        sentinel_ports = ports[3:]
        self.sentinels = [
            self._sentinel(i, port, sentinel_ports) for i, port in enumerate(sentinel_ports)
        ]
        self.failovers: list[FailoverReport] = []

    # -- building --------------------------------------------------------------

    def _data_node(self, name: str, port: int, replica_of: Address | None = None) -> RedisNode:
        workdir = self.directory / name
        workdir.mkdir(exist_ok=True)
        args = [
            "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
            "--notify-keyspace-events", "Ex", "--maxmemory-policy", "noeviction",
            "--user", REPLICATION_USER, "on", f">{_REPLICATION_PASSWORD}", "+psync", "+replconf",
            "+ping",
            "--masteruser", REPLICATION_USER, "--masterauth", _REPLICATION_PASSWORD,
            "--repl-backlog-size", "16mb", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", replica_of[0], str(replica_of[1])]
        return RedisNode(name, port, args, workdir / "redis.log")

    def _sentinel(self, index: int, port: int, ports: list[int]) -> RedisNode:
        name = f"sentinel-{index}"
        workdir = self.directory / name
        workdir.mkdir(exist_ok=True)
        svc = self.service
        peers = "".join(
            f"sentinel known-sentinel {svc} {HOST} {p} {self._sentinel_ids[i]}\n"
            for i, p in enumerate(ports)
            if i != index
        )
        replicas = "".join(
            f"sentinel known-replica {svc} {HOST} {n.port}\n" for n in self.nodes[1:]
        )
        return _sentinel_node(
            name, port, workdir, service=svc, primary_port=self.nodes[0].port, quorum=2,
            down_after_ms=self.down_after_ms, failover_timeout_ms=self.failover_timeout_ms,
            known=f"sentinel myid {self._sentinel_ids[index]}\n{peers}{replicas}",
        )  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every process; returns once the Sentinels agree on the whole topology."""
        primary, *replicas = self.nodes
        primary.start(self.binary)
        for i, node in enumerate(replicas, start=1):
            self.nodes[i] = node = self._data_node(node.name, node.port, primary.address)
            node.start(self.binary)
        self._wait_replicas_in_sync(primary, timeout)
        for sentinel in self.sentinels:
            sentinel.start(self.binary)
        self.wait_sentinels_agree(timeout)

    def close(self) -> None:
        """Stop every process (SIGCONT first, so a paused one can exit)."""
        for node in (*self.sentinels, *self.nodes):
            node.stop()

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the service (database 0)."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    # -- asking the Sentinels -------------------------------------------------------

    def primary_addresses(self) -> list[Address | None]:
        """What each Sentinel names as the primary now (None: it did not answer)."""
        named: list[Address | None] = []
        for sentinel in self.sentinels:
            client = sentinel.client(timeout=0.5)
            try:
                reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                named.append((_text(reply[0]), int(reply[1])) if reply else None)
            except redis.RedisError:
                named.append(None)
            finally:
                client.close()
        return named

    def current_primary(self) -> Address:
        """The primary most Sentinels name right now (what a managed endpoint resolves to).

        Raises:
            LookupError: no Sentinel answered.
        """
        named = Counter(a for a in self.primary_addresses() if a is not None)
        if not named:
            raise LookupError(f"no Sentinel of {self.service} answered")
        return named.most_common(1)[0][0]

    def primary(self) -> RedisNode:
        """The node every Sentinel names as the primary."""
        named = set(self.primary_addresses())
        if len(named) != 1 or None in named:
            raise RuntimeError(f"the Sentinels do not agree on the primary: {named}")
        return self.node_at(next(iter(named)))  # type: ignore[arg-type]

    def node_at(self, address: Address) -> RedisNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(f"no data node at {address}")

    def replicas(self) -> list[RedisNode]:
        primary = self.primary()
        return [n for n in self.nodes if n is not primary]

    def wait_sentinels_agree(self, timeout: float = 30.0) -> None:
        """Until every Sentinel names one primary, knows 2 replicas up and 2 other Sentinels."""
        deadline = time.monotonic() + timeout
        problem = "not asked yet"
        while time.monotonic() < deadline:
            problem = self._disagreement()
            if not problem:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Sentinels did not agree within {timeout:g}s: {problem}")

    def _disagreement(self) -> str:
        named = set(self.primary_addresses())
        if len(named) != 1 or None in named:
            return f"they name {named}"
        for sentinel in self.sentinels:
            client = sentinel.client(timeout=0.5)
            try:
                replicas = client.sentinel_slaves(self.service)
                peers = client.execute_command("SENTINEL", "SENTINELS", self.service)
            except redis.RedisError as exc:
                return f"{sentinel.name}: {exc}"
            finally:
                client.close()
            up = [r for r in replicas if r.get("flags") == "slave"]
            linked = [p for p in peers if _text(p.get(b"flags", b"")) == "sentinel"]
            if len(linked) != 2 or len(up) != 2:
                return f"{sentinel.name} is linked to {len(linked)} Sentinels, {len(up)} replicas"
        return ""

    # -- faults ---------------------------------------------------------------------

    def lag_replicas(self) -> int:
        """Cut the replication link; return the primary's replication offset at the cut."""
        client = self.primary().client()
        try:
            client.execute_command("ACL", "SETUSER", REPLICATION_USER, "off")
            client.execute_command("CLIENT", "KILL", "USER", REPLICATION_USER)
            return int(client.info("replication")["master_repl_offset"])
        finally:
            client.close()

    def kill_primary(self) -> tuple[RedisNode, float]:
        """kill -9 the primary; returns it and the monotonic time of its death."""
        node = self.primary()
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        died = time.monotonic()
        node.process.wait(10)
        return node, died

    def pause_primary(self) -> tuple[RedisNode, float]:
        """SIGSTOP the primary; returns it and the monotonic time it stopped."""
        node = self.primary()
        node.signal(signal.SIGSTOP)
        return node, time.monotonic()

    def resume(self, node: RedisNode) -> None:
        """SIGCONT a paused node."""
        node.signal(signal.SIGCONT)

    def wait_for_failover(
        self, old: Address, since: float, timeout: float = 30.0
    ) -> FailoverReport:
        """Until every Sentinel names a new primary and that node answers ``ROLE`` master.

        Args:
            old: The address of the primary that failed.
            since: Monotonic time of the fault (the failover's seconds count from it).
            timeout: Seconds to wait.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = set(self.primary_addresses())
            if len(named) == 1 and None not in named and old not in named:
                new: Address = next(iter(named))  # type: ignore[assignment]
                if self._role(self.node_at(new)) == "master":
                    report = FailoverReport(old, new, time.monotonic() - since)
                    self.failovers.append(report)
                    return report
            time.sleep(0.05)
        raise RuntimeError(
            f"no failover away from {old} within {timeout:g}s: the Sentinels name "
            f"{self.primary_addresses()}; see {self.directory}"
        )

    def wait_demoted(self, node: RedisNode, timeout: float = 30.0) -> float:
        """Until ``node`` (a resumed old primary) says it is a replica; the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._role(node) == "slave":
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"{node.name} was not demoted within {timeout:g}s")

    def rejoin(self, node: RedisNode) -> None:
        """Start a killed node again (same port, no data) as a replica of the current primary."""
        index = self.nodes.index(node)
        fresh = self._data_node(node.name, node.port, self.primary().address)
        self.nodes[index] = fresh
        fresh.start(self.binary)

    def wait_replicas_in_sync(self, timeout: float = 30.0) -> None:
        """Until both replicas of the current primary have its whole replication stream."""
        self._wait_replicas_in_sync(self.primary(), timeout)

    def _wait_replicas_in_sync(self, primary: RedisNode, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = primary.client()
        try:
            while True:
                info = client.info("replication")
                offset = info.get("master_repl_offset", 0)
                synced = [
                    v
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                    and int(v.get("offset", -1)) >= offset
                ]  # fmt: skip
                if len(synced) >= 2:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replicas of {primary.name} not in sync: {info}")
                time.sleep(0.05)
        finally:
            client.close()

    @staticmethod
    def _role(node: RedisNode) -> str | None:
        client = node.client(timeout=0.5)
        try:
            return _text(client.execute_command("ROLE")[0])
        except redis.RedisError:
            return None
        finally:
            client.close()


def _sentinel_node(
    name: str, port: int, workdir: Path, *, service: str, primary_port: int, quorum: int,
    down_after_ms: int, failover_timeout_ms: int, known: str = "",
) -> RedisNode:  # fmt: skip
    """A Sentinel (not started) monitoring the primary on ``primary_port`` as ``service``.

    ``known`` holds config lines naming its id, peers and replicas up front.
    """
    config = workdir / "sentinel.conf"
    config.write_text(
        f"{known}port {port}\nbind {HOST}\nprotected-mode no\ndir {workdir}\n"
        f"logfile {workdir / 'sentinel.log'}\n"
        f"sentinel monitor {service} {HOST} {primary_port} {quorum}\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
        f"sentinel parallel-syncs {service} 2\n"
    )
    return RedisNode(name, port, [str(config), "--sentinel"], workdir / "sentinel.log")


# -- a primary and one replica -----------------------------------------------------


def wait_until(
    check: Callable[[], object], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check()`` every 20 ms until it is true, else fail the test."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class ReplicatedRedis:
    """A primary and its replica (and maybe a Sentinel watching them as :data:`SERVICE`)."""

    primary: RedisServer
    replica: RedisServer
    sentinel: RedisNode | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://`` URL of the primary."""
        return self.primary.url

    @property
    def sentinel_port(self) -> int:
        """The Sentinel's port."""
        assert self.sentinel is not None, "started without a Sentinel"
        return self.sentinel.port

    @property
    def sentinel_url(self) -> str:
        """``redis+sentinel://`` URL naming the Sentinel and the service."""
        return f"redis+sentinel://{HOST}:{self.sentinel_port}/{SERVICE}/0"

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
        if self.sentinel is not None:
            self.sentinel.stop()
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
        tmp_dir / "replica", "--replicaof", primary.host, str(primary.port),
        "--repl-diskless-sync-delay", "0",
    )  # fmt: skip
    pair = ReplicatedRedis(primary=primary, replica=replica)
    try:
        pair.wait_synced()
        if sentinel:
            pair.sentinel = _start_lone_sentinel(tmp_dir / "sentinel", primary)
    except BaseException:
        pair.stop()
        raise
    return pair


def _start_lone_sentinel(workdir: Path, primary: RedisServer) -> RedisNode:
    """One Sentinel (quorum 1) for the pair, returned once it has seen the replica."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    assert binary is not None  # start_redis_server already checked
    node = _sentinel_node(
        "sentinel", free_port(), workdir, service=SERVICE, primary_port=primary.port,
        quorum=1, down_after_ms=1000, failover_timeout_ms=5000,
    )  # fmt: skip
    node.start(binary)
    client = node.client(timeout=1.0)

    def knows_the_replica() -> bool:
        # A failover needs a replica the Sentinel has seen (it learns them from the primary).
        replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return any(_text(r.get(b"flags", b"")) == "slave" for r in replicas)

    try:
        wait_until(knows_the_replica, what="the Sentinel to see the replica")
    except BaseException:
        node.stop()
        raise
    finally:
        client.close()
    return node


@pytest.fixture(scope="session")
def replicated_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedRedis]:
    """One primary + replica pair for the whole session; tests isolate by namespace."""
    pair = start_replicated_redis(tmp_path_factory.mktemp("replicated"))
    yield pair
    pair.stop()


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (two probes may return the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def sentinel_topology(directory: Path, **options: int) -> Iterator[SentinelTopology]:
    """A started :class:`SentinelTopology`, every process stopped at the end."""
    topology = SentinelTopology(directory, **options)  # type: ignore[arg-type]
    try:
        topology.start()
        yield topology
    finally:
        topology.close()
