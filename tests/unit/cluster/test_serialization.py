from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.serialization import MsgpackSerializer, pack, unpack

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@given(json_like)
def test_pack_round_trips_plain_data(value: Any) -> None:
    assert unpack(pack(value)) == value


def test_tuples_come_back_as_lists() -> None:
    assert unpack(pack(("a", (1, 2)))) == ["a", [1, 2]]


def test_equal_dicts_built_in_the_same_order_pack_identically() -> None:
    assert pack({"b": 1, "a": [1, {"z": 0}]}) == pack({"b": 1, "a": [1, {"z": 0}]})


def test_rq_job_tuple_round_trips() -> None:
    job = ("worker.turns.run_turn", None, ("session-1", {"text": "hi"}), {"message_id": "m1"})
    func, instance, args, kwargs = MsgpackSerializer.loads(MsgpackSerializer.dumps(job))
    assert (func, instance, tuple(args), kwargs) == (job[0], None, job[2], job[3])


def test_loads_never_unpickles() -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pickle executed!",))

    with pytest.raises(ValueError, match="msgpack"):
        MsgpackSerializer.loads(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        MsgpackSerializer.loads(pickle.dumps({"a": 1}, protocol=2))


def test_dumps_refuses_objects_instead_of_pickling_them() -> None:
    with pytest.raises(TypeError, match="msgpack-safe"):
        MsgpackSerializer.dumps(("f", object(), (), {}))


def test_text_from_a_decoding_client_fails_clearly() -> None:
    with pytest.raises(TypeError, match="decode_responses=False"):
        unpack("text")
