"""Platform messages count against their bot's tenant's limits and wait, never dropped."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from cluster.keys import Keyspace
from tests.integration.platforms.conftest import (
    CAPPED_HOOK_TOKEN,
    CAPPED_POLL_TOKEN,
    HOOK_SECRET,
    POLL_TOKEN,
    PlatformCluster,
)

pytestmark = pytest.mark.integration


def _stats(platforms: PlatformCluster, bot: str) -> dict[str, float]:
    client = redis.Redis.from_url(platforms.redis_url)
    raw = client.hgetall(Keyspace(platforms.namespace).platform("telegram", bot).stats)
    client.close()
    return {k.decode(): float(v) for k, v in raw.items()}


def test_polled_messages_past_the_turns_in_flight_limit_wait_and_are_all_answered_in_order(
    platforms: PlatformCluster, chat_id: int
) -> None:
    tg = platforms.telegram
    platforms.provider.set_latency(ttft=0.5)  # each turn stays in flight a while
    try:
        for n in range(3):
            tg.make_update(CAPPED_POLL_TOKEN, chat_id, f"capped {n}")
        sent = tg.wait_messages(chat_id, 3, timeout=60)
    finally:
        platforms.provider.set_latency()
    time.sleep(1.5)
    assert [m.text for m in tg.messages(chat_id)] == [f"echo: capped {n}" for n in range(3)]
    assert len(sent) == 3
    assert _stats(platforms, "cappoll").get("tenant_limited", 0) >= 1, (
        "the poller held its offset while tenant 'capped' had its one turn in flight"
    )
    assert tg.pending_updates(CAPPED_POLL_TOKEN) == 0


def test_a_webhook_past_the_limit_is_answered_429_and_its_redelivery_is_answered_once(
    platforms: PlatformCluster, chat_id: int
) -> None:
    tg = platforms.telegram
    url = f"{platforms.gateways[0].url}/v1/platforms/telegram/caphook"
    headers = {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
    first = tg.make_update(CAPPED_HOOK_TOKEN, chat_id, "first", queue=False)
    second = tg.make_update(CAPPED_HOOK_TOKEN, chat_id, "second", queue=False)
    platforms.provider.set_latency(ttft=1.0)
    try:
        assert httpx.post(url, json=first, headers=headers).status_code == 200
        refused = httpx.post(url, json=second, headers=headers)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert "turns in flight" in refused.json()["error"]["message"]
        tg.wait_messages(chat_id, 1, timeout=30)
        deadline = time.monotonic() + 30
        status = 0
        while status != 200 and time.monotonic() < deadline:  # Telegram redelivers until a 2xx
            status = httpx.post(url, json=second, headers=headers).status_code
            time.sleep(0.2)
        assert status == 200
    finally:
        platforms.provider.set_latency()
    tg.wait_messages(chat_id, 2, timeout=30)
    time.sleep(1.5)
    assert [m.text for m in tg.messages(chat_id)] == ["echo: first", "echo: second"]


def test_a_bots_delivery_waiting_on_its_turn_holds_a_place_of_its_gateway(
    platforms: PlatformCluster, chat_id: int
) -> None:
    tg = platforms.telegram
    platforms.provider.set_latency(ttft=3.0)
    try:
        tg.make_update(POLL_TOKEN, chat_id, "slow one")
        deadline = time.monotonic() + 20
        held = 0
        while not held and time.monotonic() < deadline:  # the lease holder waits on the turn
            held = sum(
                httpx.get(f"{gateway.url}/readyz").json()["waiting"]
                for gateway in platforms.gateways
            )
            time.sleep(0.05)
        tg.wait_messages(chat_id, 1, timeout=60)
    finally:
        platforms.provider.set_latency()
    assert held == 1, "the delivery waiting on its turn is not counted by gateway_max_waiting"
    deadline = time.monotonic() + 30
    while sum(httpx.get(f"{g.url}/readyz").json()["waiting"] for g in platforms.gateways):
        assert time.monotonic() < deadline, "the delivery's place was not given back"
        time.sleep(0.05)
    assert [m.text for m in tg.messages(chat_id)] == ["echo: slow one"]  # delivered, in full
