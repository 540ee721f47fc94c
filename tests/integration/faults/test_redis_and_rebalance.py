"""Redis restarts under traffic, a wrong eviction policy, sessions rebalancing to a new worker."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.ring import HashRing
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, sim_config, sim_endpoints_env, start_redis_server
from tests.integration.faults.traffic import Traffic
from tests.support.fleet import Fleet, coordinator, fleet

pytestmark = pytest.mark.integration


def restart(server: RedisServer, down_for: float) -> RedisServer:
    server.process.terminate()
    server.process.wait(timeout=10)
    time.sleep(down_for)
    binary = shutil.which("redis-server")
    assert binary is not None
    argv = list(server.process.args)  # type: ignore[arg-type]
    proc = subprocess.Popen(
        [binary, *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = redis.Redis(host=server.host, port=server.port, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not come back"
            time.sleep(0.05)
    client.close()
    return RedisServer(server.host, server.port, proc)


def test_a_redis_restart_under_traffic_loses_nothing(tmp_path: Path) -> None:
    namespace = "restart"
    data = tmp_path / "redis"
    data.mkdir()
    own_redis = start_redis_server(data, "--appendonly", "yes", "--appendfsync", "always")
    servers = [own_redis]
    try:
        with (
            ProviderSimulator(ttft=0.2) as sim,
            fleet(own_redis.url, namespace, tmp_path, **sim_endpoints_env(sim)) as workers,
        ):
            _traffic_through_a_restart(sim, workers, servers)
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(timeout=10)


def _traffic_through_a_restart(
    sim: ProviderSimulator, workers: Fleet, servers: list[RedisServer]
) -> None:
    first = servers[0]
    versions = RedisVersionStore(
        first.client(), Keyspace(workers.namespace), max_config_bytes=1 << 20
    )
    versions.publish_config(sim_config())
    for worker in ("w0", "w1"):
        workers.start(worker)
    with coordinator(workers.settings()) as coord:
        traffic = Traffic(coord, sessions=16).start()
        time.sleep(1.5)
        servers.append(restart(first, down_for=1.0))
        time.sleep(3.0)
        traffic.stop()
        answered = traffic.check()
    print(
        f"redis restart under traffic: {answered} answered, 0 lost, {traffic.resubmits} resubmitted"
    )


def test_a_worker_warns_when_redis_may_evict_keys(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    data = tmp_path / "lru"
    data.mkdir()
    lru = start_redis_server(data, "--maxmemory-policy", "allkeys-lru")
    try:
        with fleet(lru.url, "lru", tmp_path) as workers:
            workers.start("w0")
            assert "maxmemory-policy is 'allkeys-lru'" in workers.log("w0")
            assert "noeviction" in workers.log("w0")
    finally:
        lru.process.terminate()
        lru.process.wait(timeout=10)


def test_a_joining_worker_takes_idle_sessions_lazily_never_mid_burst(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=0.3)
    workers.start("w0")
    settings = workers.settings(rebalance_idle=0.5)
    sessions = [f"r{i}" for i in range(40)]
    with coordinator(settings) as coord:
        hellos = [coord.submit_async(session, "hello") for session in sessions]
        busy = next(s for s in sessions if HashRing(["w0", "w1"]).owner(s) == "w1")
        workers.start("w1")
        coord.router.placement.active_workers(fresh=True)
        # A session in the middle of a burst stays where its agent is.
        burst = [coord.submit_async(busy, f"burst {i}") for i in range(3)]
        assert {h.result(timeout=30).worker_id for h in burst} == {"w0"}
        assert {h.result(timeout=60).worker_id for h in hellos} == {"w0"}
        time.sleep(0.6)  # every session is now idle past rebalance_idle
        moved = {s: coord.submit(s, "again", timeout=30).worker_id for s in sessions}
    ring = HashRing(["w0", "w1"])
    assert all(worker == ring.owner(s) for s, worker in moved.items()), (
        "idle sessions follow the ring"
    )
    share = sum(worker == "w1" for worker in moved.values()) / len(sessions)
    assert 0.2 <= share <= 0.8, f"the newcomer took {share:.0%} of the sessions"
