"""The durability setting: its validation, and what a replica's answer to WAIT means."""

from __future__ import annotations

import asyncio
import json

import pytest

from cluster.durability import Durability
from cluster.errors import ConfigError, MessageLost, NotReplicated
from cluster.settings import ClusterSettings
from coordinator.http.errors import handle_cluster_error


def test_the_setting_comes_from_the_environment_like_every_other() -> None:
    settings = ClusterSettings.from_env(
        {
            "AGENT_CLUSTER_REDIS_DURABILITY": "replica",
            "AGENT_CLUSTER_REDIS_DURABILITY_TIMEOUT": "250",
            "AGENT_CLUSTER_REDIS_DURABILITY_REPLICAS": "2",
        }
    )
    assert settings.durability() == Durability("replica", 250, 2)
    assert ClusterSettings().durability() == Durability("none", 500)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"AGENT_CLUSTER_REDIS_DURABILITY": "quorum"}, "one of none, replica"),
        ({"AGENT_CLUSTER_REDIS_DURABILITY_TIMEOUT": "9000"}, "1-4000 ms"),
        ({"AGENT_CLUSTER_REDIS_DURABILITY_TIMEOUT": "0.5"}, "whole number"),
        (
            {"AGENT_CLUSTER_REDIS_DURABILITY_REPLICAS": "0"},
            "(?i)redis_durability_replicas must be a whole number",
        ),
        (
            {
                "AGENT_CLUSTER_REDIS_DURABILITY": "replica",
                "AGENT_CLUSTER_REDIS_URL": "fakeredis://x",
            },
            "has none",
        ),
    ],
)
def test_bad_values_say_what_to_set(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        ClusterSettings.from_env(env)


def test_only_the_acknowledging_scripts_wait_and_only_with_replica() -> None:
    replica, none = Durability("replica", 100), Durability("none", 100)
    for script in ("turn_enqueue", "lease_acquire", "turn_begin", "turn_claim", "session_commit"):
        assert replica.waits_for(script) and not none.waits_for(script)
    assert not replica.waits_for("lease_extend") and not replica.waits_for("membership_heartbeat")


def _role(replicas: int) -> list[object]:
    """A primary's ``ROLE`` reply listing ``replicas`` attached replicas."""
    return [b"master", 1000, [[b"127.0.0.1", b"7000", b"990"] for _ in range(replicas)]]


def test_no_replica_confirming_is_never_a_success() -> None:
    durability = Durability("replica", 100)
    durability.confirm("session_commit", 1, _role(1))
    durability.confirm("session_commit", 2, _role(2))
    with pytest.raises(NotReplicated, match="0 of 1 .*session_commit within 100 ms"):
        durability.confirm("session_commit", 0, _role(0))  # none attached: still one needed
    with pytest.raises(NotReplicated, match="0 of 1"):
        durability.confirm("session_commit", 0, _role(1))


def test_every_attached_replica_must_confirm_and_the_next_wait_asks_for_all() -> None:
    """Sentinel may promote either of two replicas: one confirming is not enough."""
    durability = Durability("replica", 100)
    pipe = _Pipe()
    durability.queue_wait(pipe)
    assert pipe.calls == [("wait", 1, 100), ("ROLE",)]
    with pytest.raises(NotReplicated, match="1 of 2 Redis replica"):
        durability.confirm("session_commit", 1, _role(2))  # the second is behind
    pipe = _Pipe()
    durability.queue_wait(pipe)
    assert pipe.calls == [("wait", 2, 100), ("ROLE",)]  # learned: wait for both
    durability.confirm("session_commit", 2, _role(2))
    assert not durability.confirmed(1, _role(2))
    assert durability.confirmed(1, _role(1))  # one left: it is every attached replica
    pipe = _Pipe()
    durability.queue_wait(pipe)
    assert pipe.calls == [("wait", 1, 100), ("ROLE",)]


def test_a_floor_of_replicas_refuses_a_primary_that_lost_one_to_a_promotion() -> None:
    """Sentinel fails over a primary that still serves: the replica not yet moved away
    confirms its writes, but the promoted one left it: one replica attached, two required."""
    durability = Durability("replica", 100, replicas=2)
    pipe = _Pipe()
    durability.queue_wait(pipe)
    assert pipe.calls == [("wait", 2, 100), ("ROLE",)]
    durability.confirm("session_commit", 2, _role(2))
    with pytest.raises(NotReplicated, match=r"1 of 2 .*\(1 attached.*redis_durability_replicas=2"):
        durability.confirm("session_commit", 1, _role(1))
    with pytest.raises(ConfigError, match="redis_durability_replicas must be a whole number >= 1"):
        Durability("replica", 100, replicas=0)


class _Pipe:
    """Records what :meth:`Durability.queue_wait` queues."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def wait(self, replicas: int, timeout: int) -> None:
        self.calls.append(("wait", replicas, timeout))

    def role(self) -> None:
        self.calls.append(("ROLE",))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (NotReplicated("no replica confirmed"), "not_replicated"),
        (MessageLost("a failover lost it"), "message_lost"),
    ],
)
def test_http_callers_get_503_with_retry_after(error: Exception, kind: str) -> None:
    response = asyncio.run(handle_cluster_error(None, error))  # type: ignore[arg-type]
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert json.loads(bytes(response.body))["error"]["type"] == kind
