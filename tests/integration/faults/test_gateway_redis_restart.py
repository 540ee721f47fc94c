"""Callers waiting on a gateway while Redis restarts: every one is answered, none sees an error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import sim_config, sim_endpoints_env, start_redis_server
from tests.integration.faults.test_redis_and_rebalance import restart
from tests.support.fleet import fleet
from tests.support.gateway import API_KEY, start_gateway, stop

pytestmark = pytest.mark.integration

CALLERS = 40


def test_callers_waiting_through_a_redis_restart_are_all_answered(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis_server(data, "--appendonly", "yes", "--appendfsync", "always")
    servers = [server]
    try:
        with (
            ProviderSimulator(ttft=2.0) as sim,
            fleet(server.url, "gwrestart", tmp_path, **sim_endpoints_env(sim)) as workers,
        ):
            RedisVersionStore(
                server.client(), Keyspace("gwrestart"), max_config_bytes=1 << 20
            ).publish_config(sim_config())
            workers.start("w0", concurrency=CALLERS)
            gateway = start_gateway(server.url, "gwrestart", tmp_path, "g")
            try:

                async def callers() -> list[httpx.Response]:
                    async with httpx.AsyncClient(
                        base_url=gateway.url,
                        headers={"Authorization": f"Bearer {API_KEY}"},
                        timeout=60,
                    ) as http:
                        tasks = [
                            asyncio.create_task(
                                http.post(
                                    f"/v1/sessions/restart-{i}/messages",
                                    json={"text": "hello", "message_id": f"r{i}"},
                                )
                            )
                            for i in range(CALLERS)
                        ]
                        while (await http.get("/readyz")).json().get("waiting") != CALLERS:
                            await asyncio.sleep(0.02)
                        servers.append(await asyncio.to_thread(restart, servers[0], down_for=1.0))
                        return await asyncio.gather(*tasks)

                started = time.monotonic()
                answers = asyncio.run(callers())
                took = time.monotonic() - started
            finally:
                stop(gateway.process)
    finally:
        for each in servers:
            each.process.terminate()
            each.process.wait(timeout=10)
    failed = [r.text for r in answers if r.status_code != 200]
    assert not failed, failed[:3]
    assert sorted(r.json()["message_id"] for r in answers) == sorted(
        f"r{i}" for i in range(CALLERS)
    )
    print(f"{CALLERS} callers waited through a Redis restart: all answered in {took:.1f}s")
