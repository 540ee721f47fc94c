"""The Python ingress' defaults: a reply is awaited as long as a turn may run (fakeredis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cluster.connection import connect, drop_embedded_server
from cluster.errors import TurnTimeout
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator


@pytest.fixture
def coordinator() -> Iterator[Coordinator]:
    name = f"ingress-{uuid.uuid4().hex[:8]}"
    settings = ClusterSettings(redis_url=f"fakeredis://{name}", turn_timeout=900.0)
    coordinator = Coordinator(settings=settings, client=connect(settings.redis_url))
    coordinator.membership.register(
        "w1", host="h", pid=1, queue=coordinator.keyspace.worker_queue("w1")
    )
    yield coordinator
    coordinator.close()
    drop_embedded_server(name)


def test_result_waits_for_the_turn_timeout_by_default(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited: list[float] = []

    def no_reply(session_key: str, message_id: str, timeout: float) -> None:
        waited.append(timeout)  # the turn outlived the wait: no reply (yet)

    handle = coordinator.submit_async("s1", "hi", message_id="m1")
    monkeypatch.setattr(coordinator.replies, "wait", no_reply)
    with pytest.raises(TurnTimeout, match=r"within 900s .*send the same message id again"):
        handle.result()
    assert len(waited) == 1 and 899.0 < waited[0] <= 900.0
