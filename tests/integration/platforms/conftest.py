"""A cluster for the chat platform tests: real Redis, two worker processes, the
provider simulator as the model, the Telegram and Slack simulators, and two
gateway processes (``agent-cluster serve``) serving the same bots."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from agent.simulator import ProviderSimulator
from agent.simulator.slack_api import SlackSimulator
from agent.simulator.telegram_api import TelegramSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, sim_config, sim_endpoints_env
from tests.support.fleet import Fleet, fleet
from tests.support.gateway import Gateway, start_gateway, stop

POLL_TOKEN = "111:poll-token-" + "a" * 20
HOOK_TOKEN = "222:hook-token-" + "b" * 20
HOOK_SECRET = "hook-secret-" + "c" * 16
CAPPED_POLL_TOKEN = "333:capped-poll-" + "f" * 20
CAPPED_HOOK_TOKEN = "444:capped-hook-" + "g" * 20
SLACK_TOKEN = "xoxb-test-" + "d" * 20
SLACK_SIGNING = "slack-signing-" + "e" * 18
LEASE_TTL = "2"
EDIT_INTERVAL = 0.3
CHAT_INTERVAL = 0.1


@dataclass
class PlatformCluster:
    redis_url: str
    namespace: str
    tmp: Path
    fleet: Fleet
    provider: ProviderSimulator
    telegram: TelegramSimulator
    slack: SlackSimulator
    gateways: list[Gateway]
    env: dict[str, str]

    def waiting(self, client: redis.Redis, platform: str, bot: str) -> int:
        """Deliveries of the bot accepted and not answered yet."""
        return int(client.hlen(Keyspace(self.namespace).platform(platform, bot).inbox))

    def holder_gateway(self, client: redis.Redis, platform: str, bot: str) -> int | None:
        """Index of the gateway holding the bot's lease (by the pid in the holder name)."""
        raw = client.hget(Keyspace(self.namespace).platform(platform, bot).lease, "worker")
        if raw is None:
            return None
        pid = int(raw.decode().split(":")[-2])
        for index, gateway in enumerate(self.gateways):
            if gateway.process.pid == pid:
                return index
        return None

    def kill_gateway(self, index: int) -> None:
        self.gateways[index].process.send_signal(signal.SIGKILL)
        self.gateways[index].process.wait(timeout=10)

    def restart_gateway(self, index: int) -> None:
        self.gateways[index] = start_gateway(
            self.redis_url, self.namespace, self.tmp, f"g{index}-{uuid.uuid4().hex[:4]}", **self.env
        )


@pytest.fixture(scope="module")
def platforms(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformCluster]:
    namespace = f"p{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("platforms")
    client = redis.Redis.from_url(redis_server.url)
    with (
        ProviderSimulator() as sim,
        TelegramSimulator() as tg,
        SlackSimulator() as sl,
        fleet(redis_server.url, namespace, tmp, **sim_endpoints_env(sim)) as workers,
    ):
        tg.add_bot(POLL_TOKEN)
        tg.add_bot(HOOK_TOKEN)
        tg.add_bot(CAPPED_POLL_TOKEN)
        tg.add_bot(CAPPED_HOOK_TOKEN)
        sl.add_token(SLACK_TOKEN)
        RedisVersionStore(client, Keyspace(namespace)).publish_config(sim_config())
        for worker_id in ("w1", "w2"):
            workers.start(worker_id, wait=False)
        for worker_id in ("w1", "w2"):
            workers.wait_live(worker_id)
        env = {
            "AGENT_CLUSTER_TELEGRAM_BOTS": (
                "pollbot=poll,hookbot=webhook,cappoll=poll/capped,caphook=webhook/capped"
            ),
            # Tenant "capped" (the two cap* bots): one turn in flight at a time.
            "AGENT_CLUSTER_TENANT_LIMITS": "capped=0/1",
            "AGENT_CLUSTER_TELEGRAM_TOKEN_CAPPOLL": CAPPED_POLL_TOKEN,
            "AGENT_CLUSTER_TELEGRAM_TOKEN_CAPHOOK": CAPPED_HOOK_TOKEN,
            "AGENT_CLUSTER_TELEGRAM_SECRET_CAPHOOK": HOOK_SECRET,
            "AGENT_CLUSTER_SLACK_APPS": "helpdesk=acme",
            "AGENT_CLUSTER_TELEGRAM_API_URL": tg.url,
            "AGENT_CLUSTER_SLACK_API_URL": sl.url + "/api/",
            "AGENT_CLUSTER_PLATFORM_LEASE_TTL": LEASE_TTL,
            "AGENT_CLUSTER_PLATFORM_EDIT_INTERVAL": str(EDIT_INTERVAL),
            "AGENT_CLUSTER_PLATFORM_CHAT_INTERVAL": str(CHAT_INTERVAL),
            "AGENT_CLUSTER_TELEGRAM_TOKEN_POLLBOT": POLL_TOKEN,
            "AGENT_CLUSTER_TELEGRAM_TOKEN_HOOKBOT": HOOK_TOKEN,
            "AGENT_CLUSTER_TELEGRAM_SECRET_HOOKBOT": HOOK_SECRET,
            "AGENT_CLUSTER_SLACK_TOKEN_HELPDESK": SLACK_TOKEN,
            "AGENT_CLUSTER_SLACK_SIGNING_SECRET_HELPDESK": SLACK_SIGNING,
        }
        gateways = [start_gateway(redis_server.url, namespace, tmp, f"g{i}", **env) for i in (0, 1)]
        cluster = PlatformCluster(
            redis_server.url, namespace, tmp, workers, sim, tg, sl, gateways, env
        )
        try:
            yield cluster
        finally:
            for gateway in cluster.gateways:
                stop(gateway.process)
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f"rq:*{namespace}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def chat_id() -> int:
    return int.from_bytes(os.urandom(4), "big") + 10_000
