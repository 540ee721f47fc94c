"""Session store contract: fenced commits, byte-identical frozen prompt, exactly-once replies."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from cluster.errors import InvalidMessage, LeaseLost
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from cluster.replies import ReplyChannel
from cluster.serialization import pack
from cluster.session_store import RedisSessionStore, StoredPrompt

USER = {"role": "user", "content": "!sh ls"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "name": "terminal", "arguments": {"command": "ls"}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": "a.txt"}
ANSWER = {"role": "assistant", "content": "[terminal] a.txt"}


def _lease(
    client: redis.Redis, keyspace: Keyspace, session: str = "s1", worker: str = "w1"
) -> Lease:
    lease = RedisLeaseStore(client, keyspace).acquire(session, worker, 10)
    assert lease is not None
    return lease


def test_new_session_loads_empty(client: redis.Redis, keyspace: Keyspace) -> None:
    snapshot = RedisSessionStore(client, keyspace).load("s1")
    assert snapshot.history == [] and snapshot.frozen_prompt is None and snapshot.meta is None


def test_commit_and_load_round_trip(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisSessionStore(client, keyspace)
    lease = _lease(client, keyspace)
    assert (
        store.commit(
            lease,
            message_id="m1",
            new_messages=[USER, CALL, RESULT, ANSWER],
            reply={"text": "[terminal] a.txt"},
        ).turns
        == 1
    )
    second = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "echo: hi"}]
    assert (
        store.commit(lease, message_id="m2", new_messages=second, reply={"text": "echo: hi"}).turns
        == 2
    )
    snapshot = store.load("s1")
    assert snapshot.history == [USER, CALL, RESULT, ANSWER, *second]
    meta = snapshot.meta
    assert meta is not None and meta.session_key == "s1" and meta.turns == 2
    assert abs(meta.last_active - time.time()) < 60 and meta.created <= meta.last_active
    assert store.reply_for("s1", "m1") == {"text": "[terminal] a.txt"}
    assert store.reply_for("s1", "never") is None


def test_frozen_prompt_reads_back_byte_identically(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisSessionStore(client, keyspace)
    schemas = [
        {
            "name": "memory",
            "description": "Notes ✓",
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "name": "terminal",
            "description": "Run",
            "parameters": {
                "type": "object",
                "required": ["command"],
                "properties": {"command": {"type": "string"}},
            },
        },
    ]
    prompt = StoredPrompt.build("You are helpful.\nToday: 2026-01-01 ✓", schemas)
    store.save_frozen_prompt(_lease(client, keyspace), prompt)
    loaded = store.load("s1").frozen_prompt
    assert loaded is not None
    assert loaded.blob == prompt.blob
    assert loaded.system_prompt == prompt.system_prompt
    assert pack(loaded.tool_schemas) == pack(schemas)
    assert [list(s) for s in loaded.tool_schemas] == [list(s) for s in schemas]  # key order kept


def test_duplicate_message_id_returns_count_and_appends_nothing(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisSessionStore(client, keyspace)
    lease = _lease(client, keyspace)
    store.commit(lease, message_id="m1", new_messages=[USER, ANSWER], reply={"text": "first"})
    again = store.commit(
        lease, message_id="m1", new_messages=[USER, ANSWER], reply={"text": "second"}
    )
    assert again.turns == 1 and again.duplicate
    assert store.load("s1").history == [USER, ANSWER]
    assert store.reply_for("s1", "m1") == {"text": "first"}


def test_duplicate_is_detected_across_workers(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisSessionStore(client, keyspace)
    leases = RedisLeaseStore(client, keyspace)
    first = _lease(client, keyspace, worker="w1")
    store.commit(first, message_id="m1", new_messages=[USER, ANSWER], reply="done")
    leases.release(first)
    second = _lease(client, keyspace, worker="w2")  # redelivered after a crash
    assert store.commit(second, message_id="m1", new_messages=[USER, ANSWER], reply="x").duplicate
    assert len(store.load("s1").history) == 2


def test_takeover_fences_every_write_and_nothing_is_written(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisSessionStore(client, keyspace)
    leases = RedisLeaseStore(client, keyspace)
    old = leases.acquire("s1", "w1", 0.1)
    assert old is not None
    store.commit(old, message_id="m0", new_messages=[USER, ANSWER], reply="r0")
    time.sleep(0.15)
    new = leases.acquire("s1", "w2", 10)
    assert new is not None
    before = store.load("s1")
    with pytest.raises(LeaseLost) as err:
        store.commit(old, message_id="m1", new_messages=[USER, ANSWER], reply="late")
    message = str(err.value)
    assert "'s1'" in message and f"token {old.token}" in message and "another worker" in message
    with pytest.raises(LeaseLost):
        store.save_frozen_prompt(old, StoredPrompt.build("p", []))
    with pytest.raises(LeaseLost):
        store.reset(old, message_id="reset-1", reply="reset", job_id="j", reply_ttl=30)
    assert store.load("s1") == before
    assert store.reply_for("s1", "m1") is None
    assert store.commit(new, message_id="m1", new_messages=[USER, ANSWER], reply="ok").turns == 2


def test_commit_without_any_lease_is_refused(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisSessionStore(client, keyspace)
    lease = _lease(client, keyspace)
    RedisLeaseStore(client, keyspace).release(lease)
    with pytest.raises(LeaseLost, match="not held"):
        store.commit(lease, message_id="m1", new_messages=[USER], reply="r")
    assert store.load("s1").history == []


def test_processed_ids_expire_after_retention(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisSessionStore(client, keyspace, processed_retention=0.1)
    lease = _lease(client, keyspace)
    store.commit(lease, message_id="old", new_messages=[USER], reply="r-old")
    time.sleep(0.15)
    store.commit(lease, message_id="new", new_messages=[USER], reply="r-new")
    assert store.reply_for("s1", "old") is None
    assert store.reply_for("s1", "new") == "r-new"


def test_reset_is_a_hard_reset_that_answers_and_keeps_tokens_monotonic(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisSessionStore(client, keyspace)
    leases = RedisLeaseStore(client, keyspace)
    lease = _lease(client, keyspace)
    store.save_frozen_prompt(lease, StoredPrompt.build("p", []))
    store.commit(lease, message_id="m1", new_messages=[USER], reply="r")
    client.hset(keyspace.tool_state("s1"), "todo", pack(["x"]))
    store.reset(lease, message_id="new-1", reply={"reset": True}, job_id="j", reply_ttl=30)
    snapshot = store.load("s1")
    assert snapshot.history == [] and snapshot.frozen_prompt is None and snapshot.meta is None
    assert store.reply_for("s1", "m1") is None and not client.exists(keyspace.tool_state("s1"))
    assert store.reply_for("s1", "new-1") == {"reset": True}, "the reset itself is answered once"
    assert ReplyChannel(client, keyspace, reply_ttl=30).wait("s1", "new-1", 0) == {"reset": True}
    leases.release(lease)
    again = _lease(client, keyspace)
    assert again.token > lease.token


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"message_id": "", "new_messages": [USER], "reply": "r"}, "message id"),
        (
            {"message_id": "m", "new_messages": [{"role": "system", "content": "x"}], "reply": "r"},
            "role",
        ),
        (
            {"message_id": "m", "new_messages": [{"role": "user", "content": None}], "reply": "r"},
            "content",
        ),
        ({"message_id": "m", "new_messages": ["hi"], "reply": "r"}, "dict"),
        ({"message_id": "m", "new_messages": [USER], "reply": None}, "None"),
    ],
)
def test_malformed_turns_are_rejected_before_writing(
    client: redis.Redis, keyspace: Keyspace, kwargs: dict[str, object], fragment: str
) -> None:
    store = RedisSessionStore(client, keyspace)
    with pytest.raises(InvalidMessage, match=fragment):
        store.commit(_lease(client, keyspace), **kwargs)  # type: ignore[arg-type]
    assert store.load("s1").history == []


def test_load_is_one_round_trip(
    client: redis.Redis, keyspace: Keyspace, round_trips: Callable[[], int]
) -> None:
    store = RedisSessionStore(client, keyspace)
    before = round_trips()
    store.load("s1")
    assert round_trips() - before == 1
