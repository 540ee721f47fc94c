"""Pure pieces of the HTTP API: SSE encoding, Last-Event-ID, OpenAI messages, errors, OpenAPI."""

from __future__ import annotations

import pytest

from cluster.errors import (
    InvalidMessage,
    NoLiveWorkers,
    PayloadTooLarge,
    RequestRefused,
    TurnRejected,
    TurnTimeout,
    UnknownWorker,
)
from coordinator.http.admin_routes import admin_routes
from coordinator.http.errors import status_of
from coordinator.http.openai_compat import chat_completion_routes, message_text, openai_usage
from coordinator.http.openapi import openapi_document
from coordinator.http.routes import routes
from coordinator.http.schedule_routes import schedule_routes
from coordinator.http.sse import SseEvent, encode, event_id_or_none


def test_sse_encoding() -> None:
    assert encode(SseEvent("delta", {"type": "delta", "text": "a\nb"}, "5-0")) == (
        b'id: 5-0\nevent: delta\ndata: {"type":"delta","text":"a\\nb"}\n\n'
    )
    assert encode(SseEvent("accepted", {})).startswith(b"event: accepted\n")


@pytest.mark.parametrize(
    "value", ["1700000000000-0", " 1-2 ", "18446744073709551615-18446744073709551615"]
)
def test_event_ids_accepted(value: str) -> None:
    assert event_id_or_none(value) == value.strip()


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "1-",
        "-1",
        "1-2-3",
        "$",
        "+",
        "1" * 30 + "-0",
        "18446744073709551616-0",
        "1-" + "9" * 20,
    ],
)
def test_event_ids_refused(value: str) -> None:
    with pytest.raises(InvalidMessage, match="Last-Event-ID"):
        event_id_or_none(value)


def test_only_the_last_user_message_is_new() -> None:
    assert (
        message_text([{"role": "user", "content": "old"}, {"role": "user", "content": "new"}])
        == "new"
    )
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert message_text([{"role": "user", "content": parts}]) == "a\nb"
    for bad in (
        [],
        "x",
        [{"role": "assistant", "content": "x"}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
    ):
        with pytest.raises(InvalidMessage):
            message_text(bad)


def test_openai_usage_counts_every_prompt_token() -> None:
    usage = openai_usage(
        {"input_tokens": 10, "cache_read_tokens": 90, "cache_write_tokens": 5, "output_tokens": 7}
    )
    assert usage == {
        "prompt_tokens": 105,
        "completion_tokens": 7,
        "total_tokens": 112,
        "prompt_tokens_details": {"cached_tokens": 90},
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidMessage("x"), 400),
        (PayloadTooLarge("x"), 413),
        (TurnRejected("x"), 409),
        (UnknownWorker("x"), 404),
        (NoLiveWorkers("x"), 503),
        (TurnTimeout("x"), 504),
        (RequestRefused("x", status=415, kind="unsupported_media_type"), 415),
    ],
)
def test_error_statuses(error: Exception, status: int) -> None:
    assert status_of(error)[0] == status  # type: ignore[arg-type]


def test_every_route_is_documented_and_every_documented_path_routed() -> None:
    documented = openapi_document()["paths"]
    routed = {}
    for route in [*routes(), *schedule_routes(), *admin_routes(), *chat_completion_routes()]:
        path = route.path.replace(":session_key", "")  # type: ignore[attr-defined]
        routed.setdefault(path, set()).update(m.lower() for m in route.methods or ())  # type: ignore[attr-defined]
    routed["/openapi.json"] = {"get"}
    for path, methods in routed.items():
        assert path in documented, path
        assert methods - {"head"} == set(documented[path]), path
    assert set(documented) == set(routed)
