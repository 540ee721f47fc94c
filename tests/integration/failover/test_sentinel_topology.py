"""The Sentinel topology the failover tests and the chaos harness stand on does what
they rely on: a kill -9 is followed by a failover in seconds, lagged replicas
really lose writes the old primary acknowledged (on loopback they otherwise
never would), and a paused primary that resumes takes writes until Sentinel
demotes it, then loses them."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import Sentinel

from tests.support.sentinel_topology import SentinelTopology

pytestmark = pytest.mark.integration


def _sentinel_client(topology: SentinelTopology) -> Sentinel:
    return Sentinel([s.address for s in topology.sentinels], socket_timeout=1.0)


def test_the_sentinels_agree_and_clients_find_the_primary_through_them(
    sentinels: SentinelTopology,
) -> None:
    primary = sentinels.primary()
    assert len(sentinels.replicas()) == 2
    assert sentinels.url.startswith("redis+sentinel://127.0.0.1:")
    assert sentinels.url.endswith(f"/{sentinels.service}")
    assert _sentinel_client(sentinels).discover_master(sentinels.service) == primary.address
    assert 6379 not in {n.port for n in (*sentinels.nodes, *sentinels.sentinels)}


def test_a_failover_after_lagged_replicas_loses_what_the_old_primary_acknowledged(
    sentinels: SentinelTopology,
) -> None:
    old = sentinels.primary().client()
    old.set("written-before-the-cut", "kept")
    sentinels.wait_replicas_in_sync()
    sentinels.lag_replicas()
    assert old.set("acknowledged-after-the-cut", "lost")  # the primary said OK
    old.close()

    dead, died = sentinels.kill_primary()
    report = sentinels.wait_for_failover(dead.address, died)

    assert report.new != dead.address
    assert 0.5 < report.seconds < 15, report
    through_sentinel = _sentinel_client(sentinels).master_for(sentinels.service)
    assert through_sentinel.get("written-before-the-cut") == b"kept"
    assert through_sentinel.get("acknowledged-after-the-cut") is None
    through_sentinel.close()

    sentinels.rejoin(dead)  # the next failover has two replicas again
    sentinels.wait_sentinels_agree()
    assert sentinels.node_at(dead.address) in sentinels.replicas()


def test_a_resumed_old_primary_takes_writes_until_it_is_demoted_then_loses_them(
    sentinels: SentinelTopology,
) -> None:
    paused, stopped = sentinels.pause_primary()
    report = sentinels.wait_for_failover(paused.address, stopped)
    sentinels.resume(paused)

    stale = paused.client()
    assert stale.set("written-to-the-old-primary", "lost")  # still a primary until demoted
    assert sentinels.wait_demoted(paused) > 0
    sentinels.wait_sentinels_agree()
    new = sentinels.node_at(report.new).client()
    assert new.get("written-to-the-old-primary") is None
    with pytest.raises(redis.ReadOnlyError):
        stale.set("written-to-the-old-primary", "again")
    stale.close()
    new.close()
