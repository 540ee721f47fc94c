"""Plays a failover plan against a Sentinel topology, and probes for stale fencing tokens.

:class:`FailoverPlayer` runs the faults of :mod:`failover_plan` one after the
other and records, for each, when the primary died (or stopped), how long the
Sentinels took to fail over, and what the stale-token probe found.

The probe (:class:`StaleTokenProbe`) is the direct test of "no write with a
stale token is accepted": just before a fault it takes a session's lease the
way a worker does (:class:`~cluster.leases.RedisLeaseStore`); after the
failover another holder takes it, and the probe then writes with the first
token (a fenced tool-state write and a lease extension). Both must be refused.
A promoted replica that missed the first grant has a fencing counter that went
backwards, so without a fencing epoch the new holder gets the very same token
and the stale write goes through.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from cluster.errors import AgentClusterError, LeaseLost
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from cluster.tool_state import RedisToolStateStore
from tests.integration.chaos.failover_plan import KILL_PRIMARY, PAUSE_PRIMARY, Fault
from tests.support.sentinel_topology import SentinelTopology
from tests.support.tcp_proxy import TcpProxy

__all__ = ["FailoverPlayer", "PlayedFault", "StaleTokenProbe"]

_PROBE_LEASE_TTL = 1.0  # a grant the failover kept expires soon, so the next holder can come
_RETRY_FOR = 30.0


@dataclass
class PlayedFault:
    """What happened when a fault was played (times on the run's clock)."""

    fault: Fault
    started: float
    died: float | None = None  # the primary's death (kill) or stop (pause)
    failover_seconds: float | None = None
    demoted_after: float | None = None
    settled: float | None = None
    probe: str = "not run"


class StaleTokenProbe:
    """Takes a lease before a fault, and writes with its token after another holder took it.

    Args:
        connect: Makes a client the way the product does (same URL, same code).
        namespace: The run's key namespace.
    """

    def __init__(self, connect: Callable[[], redis.Redis], namespace: str) -> None:
        self._connect = connect
        self._keyspace = Keyspace(namespace)
        self._count = 0

    def arm(self) -> tuple[str, Lease | None, str]:
        """Take a fresh probe session's lease: ``(session, lease or None, why not)``."""
        self._count += 1
        session = f"probe-{self._count}"
        client = self._connect()
        try:
            lease = RedisLeaseStore(client, self._keyspace).acquire(
                session, "probe-before", _PROBE_LEASE_TTL
            )
        except (redis.RedisError, AgentClusterError) as exc:  # e.g. not replicated in time
            return session, None, f"grant refused ({type(exc).__name__})"
        finally:
            client.close()
        return session, lease, "" if lease else "held by someone else"

    def check(self, session: str, stale: Lease) -> str:
        """After the fault: a new holder takes the lease; writes with ``stale`` must fail."""
        deadline = time.monotonic() + _RETRY_FOR
        while time.monotonic() < deadline:
            client = self._connect()
            try:
                leases = RedisLeaseStore(client, self._keyspace)
                fresh = leases.acquire(session, "probe-after", 60.0)
                if fresh is None:  # the first grant survived: wait for it to expire
                    time.sleep(0.1)
                    continue
                verdict = self._write_with(client, leases, stale)
                holder = leases.holder(session)
                if holder is None or holder.worker_id != "probe-after":
                    return "inconclusive (the new lease went away)"
                leases.release(fresh)
                return verdict
            except (redis.RedisError, AgentClusterError):
                time.sleep(0.1)
            finally:
                client.close()
        return "inconclusive (Redis did not answer)"

    def _write_with(self, client: redis.Redis, leases: RedisLeaseStore, stale: Lease) -> str:
        accepted = []
        if leases.extend(stale, 60.0):
            accepted.append("lease extension")
        store = RedisToolStateStore(client, self._keyspace, lease=stale)
        try:
            store.save(stale.session_key, "probe", "stale write")
            accepted.append("tool-state write")
        except LeaseLost:
            pass
        if accepted:
            return "ACCEPTED: " + ", ".join(accepted) + f" with stale token {stale.token}"
        return "refused"


class FailoverPlayer(threading.Thread):
    """Plays the faults in order against the topology and the workers' proxy.

    Args:
        plan: The faults.
        topology: The replicated Redis.
        cut_proxy: The proxy between one worker and Redis (the network cut's target).
        probe: The stale-token probe.
        clock: Seconds since the run's start.
        say: Where progress lines go.
    """

    def __init__(
        self,
        plan: Sequence[Fault],
        topology: SentinelTopology,
        cut_proxy: TcpProxy,
        probe: StaleTokenProbe,
        clock: Callable[[], float],
        say: Callable[[str], None],
    ) -> None:
        super().__init__(name="failover-chaos")
        self.plan = list(plan)
        self.topology = topology
        self.cut_proxy = cut_proxy
        self.probe = probe
        self.clock = clock
        self.say = say
        self.played: list[PlayedFault] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        for fault in self.plan:
            if self._halt.wait(fault.gap):
                return
            record = PlayedFault(fault, started=self.clock())
            self.played.append(record)
            self.say(f"[{record.started:7.1f}s] failover chaos: {fault.describe()}")
            try:
                self._play(fault, record)
            except Exception:
                self.errors.append(f"{fault.describe()} failed:\n{traceback.format_exc()}")
                return
            record.settled = self.clock()
            self.say(
                f"[{record.settled:7.1f}s] settled: failover "
                + (f"{record.failover_seconds:.1f}s" if record.failover_seconds else "-")
                + (f", demoted {record.demoted_after:.1f}s after SIGCONT"
                   if record.demoted_after is not None else "")
                + f"; stale-token probe: {record.probe}"
            )  # fmt: skip

    def _play(self, fault: Fault, record: PlayedFault) -> None:
        if fault.kind == KILL_PRIMARY:
            self._kill(fault, record)
        elif fault.kind == PAUSE_PRIMARY:
            self._pause(fault, record)
        else:
            self._cut(fault)

    def _kill(self, fault: Fault, record: PlayedFault) -> None:
        self.topology.lag_replicas()
        session, lease, why = self.probe.arm()  # granted after the cut: the failover loses it
        self._halt.wait(fault.lag)
        dead, died = self.topology.kill_primary()
        record.died = self.clock() - (time.monotonic() - died)
        report = self.topology.wait_for_failover(dead.address, died)
        record.failover_seconds = report.seconds
        record.probe = self.probe.check(session, lease) if lease else f"not armed: {why}"
        self.topology.rejoin(dead)
        self.topology.wait_sentinels_agree()

    def _pause(self, fault: Fault, record: PlayedFault) -> None:
        session, lease, why = self.probe.arm()
        paused, stopped = self.topology.pause_primary()
        record.died = self.clock() - (time.monotonic() - stopped)
        report = self.topology.wait_for_failover(paused.address, stopped)
        record.failover_seconds = report.seconds
        self._halt.wait(fault.hold)
        self.topology.resume(paused)
        resumed = time.monotonic()
        record.probe = self.probe.check(session, lease) if lease else f"not armed: {why}"
        self.topology.wait_demoted(paused, timeout=30 - (time.monotonic() - resumed))
        record.demoted_after = time.monotonic() - resumed
        self.topology.wait_sentinels_agree()

    def _cut(self, fault: Fault) -> None:
        if fault.cut == "stall":
            self.cut_proxy.stall()
        else:
            self.cut_proxy.drop()
        self._halt.wait(fault.hold)
        self.cut_proxy.restore()
