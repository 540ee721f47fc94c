"""A bot's lease, fenced offset and inbox (fakeredis): one poller, one acceptance, one reply."""

from __future__ import annotations

import fakeredis
import pytest

from cluster.errors import ConfigError
from cluster.keys import Keyspace
from cluster.platform_bots import parse_slack_apps, parse_telegram_bots
from cluster.settings import ClusterSettings
from coordinator.platforms.secrets import read_secrets
from coordinator.platforms.sessions import ChatPlace, session_key_for
from coordinator.platforms.store import BotStore, Delivery


@pytest.fixture
def store() -> BotStore:
    return BotStore(fakeredis.FakeRedis(), Keyspace("t"), platform="telegram", bot="support")


def _delivery(mid: str, seq: int, chat: str = "42") -> Delivery:
    return Delivery(
        message_id=mid,
        session_key=f"telegram:support:{chat}",
        chat=chat,
        thread="",
        seq=seq,
        accepted_at=1.0,
    )


def test_one_holder_at_a_time_and_a_new_holder_gets_a_larger_token(store: BotStore) -> None:
    first = store.acquire("gw-a", 5.0)
    assert first is not None
    assert store.acquire("gw-b", 5.0) is None
    assert store.release(first)
    second = store.acquire("gw-b", 5.0)
    assert second is not None and second > first


def test_a_deposed_pollers_offset_never_counts(store: BotStore) -> None:
    old = store.acquire("gw-a", 5.0)
    assert old is not None and store.confirm_offset(old, 10)
    store.client.delete(store.keys.lease)  # its lease expired (a pause, a partition)
    new = store.acquire("gw-b", 5.0)
    assert new is not None and store.confirm_offset(new, 12)
    assert not store.confirm_offset(old, 30)  # the old poller wakes up and confirms
    assert store.offset() == 12
    assert not store.extend(old, 5.0)
    assert not store.delivered(old, "m1", 60.0)


def test_a_delivery_is_accepted_once_even_after_its_reply_was_sent(store: BotStore) -> None:
    assert store.accept(_delivery("m1", 1))
    assert not store.accept(_delivery("m1", 1))  # the same update at another gateway
    token = store.acquire("gw-a", 5.0)
    assert token is not None and store.delivered(token, "m1", 60.0)
    assert not store.accept(_delivery("m1", 1))  # a redelivery after the reply
    state = store.state(now=2.0)
    assert (state.waiting, state.stats["duplicates"], state.stats["delivered"]) == (0, 2, 1)


def test_waiting_deliveries_come_in_platform_order(store: BotStore) -> None:
    for mid, seq in (("c", 3), ("a", 1), ("b", 2)):
        store.accept(_delivery(mid, seq))
    assert [d.message_id for d in store.waiting()] == ["a", "b", "c"]
    assert store.state(now=11.0).oldest_wait == 10.0


def test_group_sessions_per_chat_or_per_user_and_threads_apart() -> None:
    place = ChatPlace(chat="-100", user="7", group=True, thread="")
    assert (
        session_key_for("telegram", "b", "default", place, group_sessions="chat")
        == "telegram:b:-100"
    )
    assert (
        session_key_for("telegram", "b", "acme", place, group_sessions="user")
        == "@acme/telegram:b:-100:u7"
    )
    topic = ChatPlace(chat="-100", user="7", group=True, thread="5")
    assert (
        session_key_for("telegram", "b", "default", topic, group_sessions="chat")
        == "telegram:b:-100:t5"
    )


def test_bot_settings_are_validated_with_a_clear_error() -> None:
    assert parse_telegram_bots("a=poll,b=webhook/acme")[1].tenant == "acme"
    assert parse_slack_apps("ops")[0].tenant == "default"
    with pytest.raises(ConfigError, match="NAME=poll or NAME=webhook"):
        ClusterSettings(telegram_bots="support=push")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_telegram_bots("a=poll,a=webhook")


def test_a_missing_token_names_its_variable_and_a_token_never_shows() -> None:
    spec = parse_telegram_bots("support=webhook")[0]
    with pytest.raises(ConfigError, match="AGENT_CLUSTER_TELEGRAM_TOKEN_SUPPORT"):
        read_secrets(spec, {})
    secrets = read_secrets(
        spec,
        {
            "AGENT_CLUSTER_TELEGRAM_TOKEN_SUPPORT": "123:secret-token",
            "AGENT_CLUSTER_TELEGRAM_SECRET_SUPPORT": "hook-secret",
        },
    )
    assert "secret" not in repr(secrets) and secrets.token.reveal() == "123:secret-token"


def test_a_streaming_message_is_remembered_for_the_next_holder_and_forgotten_once_delivered(
    store: BotStore,
) -> None:
    old = store.acquire("gw-a", 5.0)
    assert old is not None
    assert store.accept(_delivery("telegram-support-7", 7))
    assert store.known("telegram-support-7") and not store.known("telegram-support-8")
    assert store.note_preview(old, "telegram-support-7", "1001")
    store.client.delete(store.keys.lease)  # gw-a died mid-stream
    new = store.acquire("gw-b", 5.0)
    assert new is not None
    assert not store.note_preview(old, "telegram-support-7", "1002"), (
        "a deposed holder writes nothing"
    )
    assert store.preview_of("telegram-support-7") == "1001"  # gw-b edits it, sends no second reply
    assert store.delivered(new, "telegram-support-7", 60.0)
    assert store.preview_of("telegram-support-7") == ""
    assert store.known("telegram-support-7"), "an answered delivery stays known (a duplicate)"
