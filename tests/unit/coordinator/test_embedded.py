"""The embedded cluster's workers run as many turns at once as a worker process does."""

from __future__ import annotations

import dataclasses

from cluster.settings import ClusterSettings
from coordinator.embedded import EmbeddedCluster


def test_embedded_workers_take_the_concurrency_of_the_settings() -> None:
    default = EmbeddedCluster(workers=1)
    assert [w.executor.concurrency for w in default.workers] == [ClusterSettings().concurrency]
    settings = dataclasses.replace(ClusterSettings(), concurrency=5)
    configured = EmbeddedCluster(workers=2, settings=settings)
    assert [w.executor.concurrency for w in configured.workers] == [5, 5]
    assert EmbeddedCluster(workers=1, concurrency=3).workers[0].executor.concurrency == 3
