"""The status page's data (fakeredis) and the gateway's metrics exposition."""

from __future__ import annotations

import dataclasses

import fakeredis
from prometheus_client.parser import text_string_to_metric_families

from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from cluster.membership import RedisMembership, WorkerState
from coordinator.metrics import (
    DEAD_VISIBLE_SECONDS,
    CoordinatorMetrics,
    cluster_exposition,
    exposition,
    recently_dead,
    route_label,
)
from coordinator.status import read_status
from coordinator.status_page import STATUS_PAGE_HTML, status_snapshot
from tests.support.records import RECORD
from worker.health import HealthWriter


def _cluster() -> tuple[fakeredis.FakeRedis, Keyspace]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keyspace("t")
    membership = RedisMembership(client, keys, heartbeat_ttl=5.0)
    writer = HealthWriter(client, keys, ttl=5.0)
    for worker_id, cost, tokens in (
        ("w1", 0.5, {"input": 100, "cache_read": 300}),
        ("w2", 0.25, {"input": 100, "cache_read": 100}),
    ):
        membership.register(
            worker_id,
            host="h",
            pid=1,
            queue=keys.worker_queue(worker_id),
            instance=f"i-{worker_id}",
        )
        writer.write(
            dataclasses.replace(
                RECORD,
                worker_id=worker_id,
                instance=f"i-{worker_id}",
                provider_tokens=tokens,
                provider_cost_usd=cost,
            ),
            [],
        )
    membership.set_state("w2", WorkerState.DRAINING)
    ClusterEventLog(client, keys).record("drain_requested", "drain of w2 requested", worker="w2")
    return client, keys


def test_snapshot_shows_states_hit_rates_provider_share_cost_and_events() -> None:
    client, keys = _cluster()
    data = status_snapshot(client, keys)
    states = {w["id"]: w["state"] for w in data["workers"]}
    assert states == {"w1": "active", "w2": "draining"}
    assert data["provider"]["cost_usd"] == 0.75
    assert data["provider"]["cache_hit_share"] == 400 / 600
    assert data["cache_hit_rate"] == 0.75  # RECORD: 3 hits, 1 miss on each worker
    (w1,) = [w for w in data["workers"] if w["id"] == "w1"]
    assert w1["provider_cache_hit_share"] == 0.75
    assert [e["detail"] for e in data["events"]] == ["drain of w2 requested"]


def test_the_page_polls_the_json_and_draws_each_worker() -> None:
    assert 'fetch("status.json"' in STATUS_PAGE_HTML
    assert 'data-worker="${esc(w.id)}" data-state="${esc(w.state)}"' in STATUS_PAGE_HTML
    assert "http://" not in STATUS_PAGE_HTML.replace('xmlns="http://www.w3.org/2000/svg"', "")


def _families(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_has_this_gateway_only_and_the_cluster_is_apart() -> None:
    client, keys = _cluster()
    metrics = CoordinatorMetrics()
    metrics.observe("POST", "/v1/sessions/{key}/messages", 200, 0.25)
    own = _families(exposition(metrics))
    assert own["agent_cluster_http_requests_total"] == [
        ({"method": "POST", "route": "/v1/sessions/{key}/messages", "status": "200"}, 1.0)
    ]
    # Cluster-wide figures are not in every replica's /metrics: a sum over replicas counts each
    # once.
    assert not {
        name for name in own if name.startswith(("agent_cluster_worker", "agent_cluster_up"))
    }
    got = _families(cluster_exposition(read_status(client, keys)))
    assert "agent_cluster_http_requests_total" not in got
    assert got["agent_cluster_up"] == [({}, 1.0)]
    assert ({"state": "draining"}, 1.0) in got["agent_cluster_workers"]
    assert ({"worker": "w1"}, 0.5) in got["agent_cluster_worker_provider_cost_dollars_total"]
    down = _families(cluster_exposition(None))
    assert down["agent_cluster_up"] == [({}, 0.0)] and "agent_cluster_workers" not in down


def test_the_route_label_is_the_template_without_converter_syntax() -> None:
    assert route_label("/v1/sessions/{key:session_key}/messages") == "/v1/sessions/{key}/messages"
    assert (
        route_label("/v1/sessions/{key:session_key}/messages/{message_id:path}/events")
        == "/v1/sessions/{key}/messages/{message_id}/events"
    )
    assert (
        route_label("/v1/admin/workers/{worker_id}/drain") == "/v1/admin/workers/{worker_id}/drain"
    )


def test_a_recovered_worker_stays_visible_as_dead_for_a_while() -> None:
    client, keys = _cluster()
    log = ClusterEventLog(client, keys)
    log.record("worker_dead", "w3 died", worker="w3", moved=1)
    log.record("worker_dead", "w1 died", worker="w1", moved=0)  # w1 registered again since
    status = read_status(client, keys)
    events = log.recent()
    assert recently_dead(events, status) == {"w3"}
    got = _families(cluster_exposition(status, sorted(recently_dead(events, status))))
    assert ({"state": "dead"}, 1.0) in got["agent_cluster_workers"]
    later = dataclasses.replace(status, now=status.now + DEAD_VISIBLE_SECONDS + 1)
    assert recently_dead(events, later) == set()
