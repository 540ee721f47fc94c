from __future__ import annotations

import pytest

from cluster.errors import InvalidMessage
from cluster.events import decode_event, encode_event


def test_round_trip() -> None:
    event = {"type": "drain", "worker_id": "w1"}
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(
    "bad",
    [{}, {"type": ""}, {"type": 3}, {"type": "x", "v": float("nan")}, {"type": "x", "v": object()}],
)
def test_encode_rejects_events_without_a_type_or_not_json(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidMessage):
        encode_event(bad)


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1,2]", b'{"no":"type"}', b'{"type":""}', b"\xff\xfe"]
)
def test_decode_returns_none_for_malformed_events(raw: bytes) -> None:
    assert decode_event(raw) is None
