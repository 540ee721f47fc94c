from __future__ import annotations

import dataclasses

import pytest
from redis.crc import key_slot

from cluster.errors import ConfigError, InvalidMessage
from cluster.keys import Keyspace, session_tag


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize(
    "session_key",
    [
        "telegram:12345",
        "a",
        "x" * 100,
        "x" * 101,
        "user {with} braces",
        "}{",
        "ünïcode",
        "#lookalike",
        "a b",
    ],
)
def test_all_keys_of_a_session_share_one_slot(session_key: str) -> None:
    ks = Keyspace("ns")
    keys = list(dataclasses.asdict(ks.session(session_key)).values())
    assert ks.tool_state(session_key) == ks.session(session_key).tools  # task id == session key
    keys.append(ks.reply_list(session_key, "msg-1"))
    assert len(set(keys)) == len(keys)
    assert len({_slot(k) for k in keys}) == 1
    for key in keys:
        assert key.startswith("ns:")
        # exactly one hash tag, with no braces inside it
        tag = key[key.index("{") + 1 : key.index("}")]
        assert "{" not in tag and tag == session_tag(session_key)


def test_readable_session_keys_are_used_verbatim() -> None:
    assert Keyspace("ac").session("telegram:42").history == "ac:s:{telegram:42}:history"


def test_unsafe_or_long_session_keys_are_digested() -> None:
    for raw in ("has{brace", "has}brace", "x" * 101, "space here", "#abc"):
        tag = session_tag(raw)
        assert tag.startswith("#") and len(tag) == 65


def test_digest_cannot_collide_with_a_verbatim_key() -> None:
    digested = session_tag("{evil}")
    # a raw session key spelled like the digest is itself digested, to another tag
    assert session_tag(digested) != digested


def test_different_sessions_and_namespaces_get_different_keys() -> None:
    a, b = Keyspace("one"), Keyspace("two")
    assert a.session("s1").history != a.session("s2").history
    assert a.session("s1").history != b.session("s1").history
    assert a.session("s1").history != a.session("S1").history


@pytest.mark.parametrize("bad", ["", None, 5])
def test_session_key_must_be_a_non_empty_string(bad: object) -> None:
    with pytest.raises(InvalidMessage):
        Keyspace("ac").session(bad)  # type: ignore[arg-type]


def test_membership_and_config_keys_share_their_group_slot() -> None:
    ks = Keyspace("ac")
    members = [ks.members_live(), ks.members_beats(), ks.members_state(), ks.members_info()]
    assert len({_slot(k) for k in members}) == 1
    config = [ks.config_doc(), ks.config_version(), ks.registry_generation()]
    assert len({_slot(k) for k in config}) == 1
    assert all(k.startswith("ac:") for k in members + config + [ks.events_channel()])


def test_worker_ids_are_validated_and_name_queues_in_the_namespace() -> None:
    ks = Keyspace("ac")
    assert ks.worker_queue("w-1") == "ac.worker.w-1"
    assert ks.owned_sessions("host:1234") == "ac:owned:host:1234"
    for bad in ("", "a b", "x{y}", "w" * 101):
        with pytest.raises(InvalidMessage):
            ks.worker_queue(bad)


@pytest.mark.parametrize("bad", ["", "a:b", "a{b}", "x" * 33, "sp ace"])
def test_namespace_is_validated(bad: str) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        Keyspace(bad)


def test_message_ids_in_reply_keys_are_made_safe() -> None:
    key = Keyspace("ac").reply_list("s", "id with {braces}")
    assert key.count("{") == 1 and key.count("}") == 1
