"""The coordinator refuses malformed or oversized messages before Redis sees them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.connection import connect, drop_embedded_server
from cluster.errors import InvalidMessage, PayloadTooLarge
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator
from coordinator.validation import (
    ATTR_VALUE_MAX_BYTES,
    MESSAGE_ID_MAX_BYTES,
    SESSION_KEY_MAX_BYTES,
    USER_ID_MAX_BYTES,
    validate_message,
)

LIMIT = 1000


def check(session: Any = "s1", text: Any = "hi", message_id: Any = "m1", **attrs: Any) -> None:
    validate_message(session, text, message_id, attrs, max_text_bytes=LIMIT)


def test_an_ordinary_message_passes() -> None:
    check(platform="http", user_id="u-1", chat_id=42, reasoning="high")
    check(session="ünïcode chat ✓", user_id=1234, chat_id=1.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"session": "x" * (SESSION_KEY_MAX_BYTES + 1)}, PayloadTooLarge, ["session_key", "256"]),
        ({"session": "é" * 129}, PayloadTooLarge, ["session_key", "258 bytes", "256"]),
        ({"message_id": "m" * (MESSAGE_ID_MAX_BYTES + 1)}, PayloadTooLarge, ["message_id", "256"]),
        ({"user_id": "u" * (USER_ID_MAX_BYTES + 1)}, PayloadTooLarge, ["user_id", "256"]),
        ({"chat_id": "c" * (ATTR_VALUE_MAX_BYTES + 1)}, PayloadTooLarge, ["chat_id", "1024"]),
        ({"text": "x" * (LIMIT + 1)}, PayloadTooLarge, ["text", "max_message_bytes=1000"]),
        ({"text": "\ud800 lone surrogate"}, InvalidMessage, ["text", "UTF-8"]),
        ({"session": "chat-\udfff"}, InvalidMessage, ["session_key", "UTF-8"]),
        ({"message_id": "m\ud83d"}, InvalidMessage, ["message_id", "UTF-8"]),
        ({"session": "a\nb"}, InvalidMessage, ["session_key", "control"]),
        ({"message_id": "m\x00"}, InvalidMessage, ["message_id", "control"]),
        ({"session": 42}, InvalidMessage, ["session_key", "int"]),
        ({"session": "  "}, InvalidMessage, ["session_key"]),
        ({"message_id": ["m"]}, InvalidMessage, ["message_id", "list"]),
        ({"text": b"bytes"}, InvalidMessage, ["text", "bytes"]),
        ({"platform": {"nested": 1}}, InvalidMessage, ["platform", "plain string or number"]),
        ({"reasoning": ["a"]}, InvalidMessage, ["reasoning", "plain string or number"]),
        ({"chat_id": True}, InvalidMessage, ["chat_id", "bool"]),
        ({"chat_id": float("nan")}, InvalidMessage, ["chat_id", "finite"]),
        ({"user_id": None}, InvalidMessage, ["user_id"]),
        ({"tenant": "x"}, InvalidMessage, ["unknown message attributes", "tenant"]),
    ],
)
def test_bad_fields_are_refused_naming_the_field_and_limit(
    kwargs: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        check(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.fixture
def coordinator() -> Iterator[Coordinator]:
    name = f"validation-{uuid.uuid4().hex[:8]}"
    settings = ClusterSettings(redis_url=f"fakeredis://{name}", max_message_bytes=LIMIT)
    coordinator = Coordinator(settings=settings, client=connect(settings.redis_url))
    yield coordinator
    coordinator.close()
    drop_embedded_server(name)


def test_a_refused_message_leaves_no_trace_in_redis(coordinator: Coordinator) -> None:
    before = sorted(coordinator.client.keys("*"))
    refused: list[dict[str, Any]] = [
        {"session_key": "s" * 300, "text": "hi"},
        {"session_key": "s1", "text": "x" * (LIMIT + 1)},
        {"session_key": "s1", "text": "\ud800"},
        {"session_key": "s1", "text": "hi", "message_id": "m" * 300},
        {"session_key": "s1", "text": "hi", "chat_id": {"a": 1}},
    ]
    for message in refused:
        with pytest.raises(InvalidMessage):
            coordinator.submit_async(**message)
    assert sorted(coordinator.client.keys("*")) == before


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        ({"text": ""}, "text must not be empty (nor only whitespace)"),
        ({"text": "  \n"}, "text must not be empty (nor only whitespace)"),
        ({"session": ""}, "session_key must not be empty (nor only whitespace)"),
        ({"text": 42}, "text must be a string, got int"),
    ],
)
def test_an_empty_or_mistyped_field_says_which(kwargs: dict[str, Any], line: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        check(**kwargs)
    assert str(refused.value) == line
