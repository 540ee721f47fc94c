"""Telegram in front of two gateways: a poller per token, one reply per update, 429s waited out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import redis

from cluster.keys import Keyspace
from cluster.ownership import RedisOwnershipStore
from cluster.tenants import scoped_key
from tests.integration.platforms.conftest import (
    CHAT_INTERVAL,
    EDIT_INTERVAL,
    HOOK_SECRET,
    HOOK_TOKEN,
    POLL_TOKEN,
    PlatformCluster,
)

pytestmark = pytest.mark.integration


def _texts(platforms: PlatformCluster, chat: int, count: int, timeout: float = 30) -> list[str]:
    """The chat's messages once ``count`` came and every reply is final (none waits in an inbox)."""
    deadline = time.monotonic() + timeout
    platforms.telegram.wait_messages(chat, count, timeout)
    client = redis.Redis.from_url(platforms.redis_url)
    try:
        while time.monotonic() < deadline and any(
            platforms.waiting(client, "telegram", bot)
            for bot in ("pollbot", "hookbot", "cappoll", "caphook")
        ):
            time.sleep(0.02)
    finally:
        client.close()
    return [m.text for m in platforms.telegram.messages(chat)]


def _stats(platforms: PlatformCluster, bot: str) -> dict[str, float]:
    client = redis.Redis.from_url(platforms.redis_url)
    raw = client.hgetall(Keyspace(platforms.namespace).platform("telegram", bot).stats)
    client.close()
    return {k.decode(): float(v) for k, v in raw.items()}


def test_same_webhook_to_both_gateways_three_times_is_answered_once(
    platforms: PlatformCluster, chat_id: int
) -> None:
    update = platforms.telegram.make_update(HOOK_TOKEN, chat_id, "hello twice", queue=False)
    before = _stats(platforms, "hookbot").get("duplicates", 0)
    statuses: list[int] = []

    def deliver(gateway_url: str) -> None:
        url = f"{gateway_url}/v1/platforms/telegram/hookbot"
        statuses.append(platforms.telegram.post_webhook(url, update, secret=HOOK_SECRET))

    threads = [
        threading.Thread(target=deliver, args=(g.url,))
        for g in platforms.gateways
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert _texts(platforms, chat_id, 1) == ["echo: hello twice"]
    time.sleep(1.0)  # a second reply would have come by now (replies take ~0.1 s here)
    assert [m.text for m in platforms.telegram.messages(chat_id)] == ["echo: hello twice"]
    assert _stats(platforms, "hookbot")["duplicates"] - before == 5


def test_webhook_with_a_wrong_secret_is_refused_and_nothing_runs(
    platforms: PlatformCluster, chat_id: int
) -> None:
    update = platforms.telegram.make_update(HOOK_TOKEN, chat_id, "forged", queue=False)
    url = f"{platforms.gateways[0].url}/v1/platforms/telegram/hookbot"
    answer = httpx.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
    assert answer.status_code == 401
    assert "X-Telegram-Bot-Api-Secret-Token" in answer.json()["error"]["message"]
    unknown = httpx.post(url.replace("hookbot", "nobot"), json=update)
    assert unknown.status_code == 404
    time.sleep(0.5)
    assert platforms.telegram.messages(chat_id) == []


def test_a_429_storm_delays_replies_and_loses_none(
    platforms: PlatformCluster, chat_id: int
) -> None:
    limited = platforms.telegram.rate_limited
    platforms.telegram.rate_limit(4, retry_after=1)
    for n in range(3):
        platforms.telegram.make_update(POLL_TOKEN, chat_id, f"storm {n}")
    texts = _texts(platforms, chat_id, 3, timeout=40)
    assert texts == ["echo: storm 0", "echo: storm 1", "echo: storm 2"]  # in order, none lost
    assert platforms.telegram.rate_limited - limited == 4


def test_two_gateways_poll_one_token_without_409s(platforms: PlatformCluster, chat_id: int) -> None:
    conflicts = platforms.telegram.conflicts
    for n in range(3):
        platforms.telegram.make_update(POLL_TOKEN, chat_id, f"steady {n}")
    assert _texts(platforms, chat_id, 3) == [f"echo: steady {n}" for n in range(3)]
    assert platforms.telegram.conflicts == conflicts


def test_poller_killed_with_kill_9_hands_over_with_no_update_lost_or_answered_twice(
    platforms: PlatformCluster, chat_id: int
) -> None:
    client = redis.Redis.from_url(platforms.redis_url)
    tg = platforms.telegram
    for n in range(3):
        tg.make_update(POLL_TOKEN, chat_id, f"before {n}")
    assert len(_texts(platforms, chat_id, 3)) == 3
    while platforms.waiting(client, "telegram", "pollbot"):
        time.sleep(0.02)  # their replies are recorded as sent
    holder = platforms.holder_gateway(client, "telegram", "pollbot")
    assert holder is not None
    platforms.provider.set_latency(ttft=1.0)  # turns are running when the poller dies
    try:
        for n in range(3):  # mid-conversation: accepted, their turns running
            tg.make_update(POLL_TOKEN, chat_id, f"during {n}")
        while (
            tg.pending_updates(POLL_TOKEN) or platforms.waiting(client, "telegram", "pollbot") < 3
        ):
            time.sleep(0.01)
        killed_at = time.monotonic()
        platforms.kill_gateway(holder)
    finally:
        platforms.provider.set_latency()
    for n in range(3):
        tg.make_update(POLL_TOKEN, chat_id, f"after {n}")
    lease = Keyspace(platforms.namespace).platform("telegram", "pollbot").lease
    while platforms.holder_gateway(client, "telegram", "pollbot") in (None, holder):
        assert time.monotonic() - killed_at < 15, "no gateway took the poller's lease over"
        time.sleep(0.05)
    handover = time.monotonic() - killed_at
    texts = _texts(platforms, chat_id, 9, timeout=40)
    time.sleep(1.0)
    texts = [m.text for m in tg.messages(chat_id)]
    expected = [f"echo: {w} {n}" for w in ("before", "during", "after") for n in range(3)]
    assert sorted(texts) == sorted(expected), texts  # each answered exactly once
    assert texts[:3] == expected[:3]
    assert tg.pending_updates(POLL_TOKEN) == 0
    print(f"poller hand-over after kill -9: {handover:.2f}s (lease ttl 2s)")
    assert client.exists(lease)
    platforms.restart_gateway(holder)
    client.close()


def test_platforms_command_lists_the_bots_with_their_holder(platforms: PlatformCluster) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "platforms", "--json"],
        env={
            **os.environ,
            "AGENT_CLUSTER_REDIS_URL": platforms.redis_url,
            "AGENT_CLUSTER_NAMESPACE": platforms.namespace,
            "AGENT_CLUSTER_TELEGRAM_BOTS": platforms.env["AGENT_CLUSTER_TELEGRAM_BOTS"],
            "AGENT_CLUSTER_SLACK_APPS": platforms.env["AGENT_CLUSTER_SLACK_APPS"],
        },
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {row["bot"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"pollbot", "hookbot", "cappoll", "caphook", "helpdesk"}
    assert rows["pollbot"]["mode"] == "poll" and rows["pollbot"]["holder"]
    assert rows["helpdesk"]["tenant"] == "acme"


def test_a_streamed_reply_edits_one_message_at_the_bounded_rate_and_ends_with_the_full_text(
    platforms: PlatformCluster, chat_id: int
) -> None:
    tg = platforms.telegram
    words = " ".join(f"word{n}" for n in range(40))
    platforms.provider.set_latency(ttft=0.2, tokens_per_second=25)  # ~3 s of streaming
    try:
        tg.make_update(POLL_TOKEN, chat_id, f"stream {words} <b>&")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            sent = tg.messages(chat_id)
            if sent and sent[0].text == f"echo: stream {words} <b>&":
                break
            time.sleep(0.05)
    finally:
        platforms.provider.set_latency()
    time.sleep(EDIT_INTERVAL * 2)  # no edit or message comes after the final text
    sent = tg.messages(chat_id)
    assert len(sent) == 1, [m.text for m in sent]  # one message, edited in place
    message = sent[0]
    assert message.text == f"echo: stream {words} <b>&"  # escaped as HTML, shown as written
    assert message.edits >= 3, "the reply was shown while it was written"
    shown = [message.sent_at, *message.edited_at]
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    assert min(gaps) >= EDIT_INTERVAL - 0.02, gaps  # never faster than the bounded rate
    calls = [c for c in tg.calls(chat_id) if c.status == 200]
    paced = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert min(paced) >= CHAT_INTERVAL - 0.02


def test_drain_of_the_worker_owning_the_chat_mid_conversation_answers_each_message_once_in_order(
    platforms: PlatformCluster, chat_id: int
) -> None:
    tg = platforms.telegram
    client = redis.Redis.from_url(platforms.redis_url)
    for n in range(3):
        tg.make_update(POLL_TOKEN, chat_id, f"before {n}")
    assert _texts(platforms, chat_id, 3) == [f"echo: before {n}" for n in range(3)]
    session = scoped_key("default", f"telegram:pollbot:{chat_id}")
    owner = RedisOwnershipStore(client, Keyspace(platforms.namespace)).owner_of(session)
    assert owner is not None
    platforms.provider.set_latency(ttft=0.6)  # turns are queued and running during the drain
    try:
        for n in range(3):
            tg.make_update(POLL_TOKEN, chat_id, f"during {n}")
        while (
            tg.pending_updates(POLL_TOKEN) or platforms.waiting(client, "telegram", "pollbot") < 3
        ):
            time.sleep(0.01)
        drained: list[int] = []
        drain = threading.Thread(
            target=lambda: drained.append(platforms.fleet.terminate(owner.worker_id))
        )
        drain.start()  # SIGTERM: the owner drains (finishes its running turn, hands the rest on)
        for n in range(3):
            tg.make_update(POLL_TOKEN, chat_id, f"after {n}")
        drain.join(timeout=60)
    finally:
        platforms.provider.set_latency()
    texts = _texts(platforms, chat_id, 9, timeout=60)
    time.sleep(1.0)  # a duplicate reply would have come by now
    texts = [m.text for m in tg.messages(chat_id)]
    expected = [f"echo: {w} {n}" for w in ("before", "during", "after") for n in range(3)]
    assert texts == expected  # each answered exactly once, in the chat's order
    assert drained == [0], "the owner drained and exited 0"
    moved = RedisOwnershipStore(client, Keyspace(platforms.namespace)).owner_of(session)
    assert moved is not None and moved.worker_id != owner.worker_id
    platforms.fleet.start(owner.worker_id)
    client.close()
