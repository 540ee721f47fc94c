"""TurnJob validation and job ids (pure, no Redis)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cluster.errors import InvalidMessage
from cluster.serialization import pack, unpack
from cluster.transport import TurnJob, job_id_for


def _valid() -> dict[str, Any]:
    return {
        "message_id": "m-1",
        "session_key": "telegram:42",
        "text": "hello",
        "submitted_at": 1700000000.5,
        "attrs": {"platform": "telegram", "user_id": "u1", "nested": {"a": [1, 2]}},
    }


def test_as_dict_round_trips_through_msgpack() -> None:
    job = TurnJob(**_valid())
    again = TurnJob.from_dict(unpack(pack(job.as_dict())))
    assert again == job
    assert again.as_dict() == _valid()


def test_integer_timestamps_become_floats_and_unknown_keys_are_ignored() -> None:
    data = _valid() | {"submitted_at": 5, "added_by_a_newer_coordinator": True}
    job = TurnJob.from_dict(data)
    assert job.submitted_at == 5.0 and isinstance(job.submitted_at, float)


def test_attrs_are_copied_not_shared() -> None:
    attrs: dict[str, Any] = {"platform": "x"}
    job = TurnJob("m", "s", "t", 0.0, attrs)
    attrs["platform"] = "changed"
    assert job.attrs == {"platform": "x"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"message_id": ""}, "message_id must be a non-empty string"),
        ({"message_id": 7}, "message_id must be a non-empty string"),
        ({"session_key": None}, "session_key must be a non-empty string"),
        ({"text": b"bytes"}, "text must be a string, got bytes"),
        ({"submitted_at": "now"}, "submitted_at must be a finite number"),
        ({"submitted_at": True}, "submitted_at must be a finite number"),
        ({"submitted_at": math.nan}, "submitted_at must be a finite number"),
        ({"attrs": ["x"]}, "attrs must be a mapping, got list"),
        ({"attrs": {1: "x"}}, "attrs keys must be strings"),
        ({"attrs": {"when": object()}}, "attrs must be plain data"),
    ],
)
def test_bad_fields_say_what_is_wrong(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(InvalidMessage, match=complaint):
        TurnJob.from_dict(_valid() | change)


def test_from_dict_names_missing_keys_and_rejects_non_mappings() -> None:
    data = _valid()
    del data["text"], data["submitted_at"]
    with pytest.raises(InvalidMessage, match="missing text, submitted_at"):
        TurnJob.from_dict(data)
    with pytest.raises(InvalidMessage, match="must be a mapping, got list"):
        TurnJob.from_dict([1, 2])


def test_job_ids_are_rq_safe_scoped_and_stable() -> None:
    plain = job_id_for("ns", "telegram:1", "msg_1-a")
    assert plain.startswith("ns-msg_1-a-") and plain == job_id_for("ns", "telegram:1", "msg_1-a")
    # the same message id in another session or namespace is another job
    assert plain != job_id_for("ns", "telegram:2", "msg_1-a")
    assert plain != job_id_for("other", "telegram:1", "msg_1-a")
    odd = job_id_for("a.b", "s", "has:colon and space")
    assert odd.startswith("a_b-") and len(odd) == len("a_b-") + 40
    for job_id in (plain, odd, job_id_for("n", "s", "x" * 500)):
        assert all(c.isalnum() or c in "_-" for c in job_id)
