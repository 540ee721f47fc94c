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
        }
    )
    assert settings.durability() == Durability("replica", 250)
    assert ClusterSettings().durability() == Durability("none", 500)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"AGENT_CLUSTER_REDIS_DURABILITY": "quorum"}, "one of none, replica"),
        ({"AGENT_CLUSTER_REDIS_DURABILITY_TIMEOUT": "9000"}, "1-4000 ms"),
        ({"AGENT_CLUSTER_REDIS_DURABILITY_TIMEOUT": "0.5"}, "whole number"),
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


def test_no_replica_confirming_is_never_a_success() -> None:
    durability = Durability("replica", 100)
    durability.confirm("session_commit", 1)
    durability.confirm("session_commit", 2)
    with pytest.raises(NotReplicated, match="session_commit within 100 ms"):
        durability.confirm("session_commit", 0)


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
