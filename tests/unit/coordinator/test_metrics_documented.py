"""Every metric family a process exports is in the README under that process, named by the guide."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prometheus_client import generate_latest

from cluster.metric_names import PREFIX
from coordinator.metrics import CoordinatorMetrics, cluster_exposition, exposition
from coordinator.status import ClusterStatus, WorkerStatus
from tests.support.records import RECORD
from worker.metrics import WorkerMetrics

README = Path(__file__).resolve().parents[3] / "README.md"


def _families(body: bytes) -> dict[str, str]:
    """Family name (as scraped, prefix removed) -> type; a counter's ``_created`` is part of it."""
    found: dict[str, str] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), re.M):
        found[name.removeprefix(f"{PREFIX}_")] = kind
    return {
        name: kind
        for name, kind in found.items()
        if not (name.endswith("_created") and (name.removesuffix("_created") + "_total") in found)
        and not (name.endswith("_created") and name.removesuffix("_created") in found)
    }


def _worker() -> dict[str, str]:
    metrics = WorkerMetrics()
    metrics.watch(
        cache_metrics=lambda: {"evictions": {"cap": 1}},
        turns_running=lambda: 0,
        turns_in_flight=lambda: 0,
        config_version=lambda: 1,
        registry_generation=lambda: 0,
        config_version_lost=lambda: 0,
    )
    return _families(generate_latest(metrics.registry))


def _gateway() -> dict[str, str]:
    return _families(exposition(CoordinatorMetrics()))


def _cluster() -> dict[str, str]:
    worker = WorkerStatus(
        worker_id="w1",
        state="active",
        heartbeat_age=0.1,
        host="h",
        pid=1,
        started=0.0,
        sessions_owned=1,
        queued=0,
        in_flight=0,
        health=dataclasses.replace(RECORD, worker_id="w1"),
    )
    status = ClusterStatus(
        namespace="t",
        now=100.0,
        config_version=1,
        registry_generation=0,
        workers=[worker],
        dead_letters=0,
    )
    return _families(cluster_exposition(status))


def _documented(heading: str) -> set[str]:
    """The backticked metric names of the README's bullet that starts with ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Metrics and the status page") :]
    section = section[: section.index("\n## ", 1)]
    bullets = re.split(r"\n- ", section)
    (bullet,) = [b for b in bullets if b.startswith(f"**{heading}**")]
    return set(re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", bullet))


def test_every_family_is_documented_under_the_process_that_exports_it() -> None:
    for heading, exported in (
        ("Worker `/metrics`", _worker()),
        ("Gateway `/metrics`", _gateway()),
        ("Gateway `/metrics/cluster`", _cluster()),
    ):
        missing = sorted(set(exported) - _documented(heading))
        assert not missing, f"exported but not in README under {heading}: {missing}"


def test_names_follow_the_prometheus_naming_guide() -> None:
    exported = {**_worker(), **_gateway(), **_cluster()}
    for name, kind in exported.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram names its unit"
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb|kib|mib|usd)(_|$)", name), (
            f"{name}: use base units (seconds, bytes, dollars)"
        )


def test_no_family_is_exported_by_two_kinds_of_endpoint() -> None:
    worker, gateway, cluster = set(_worker()), set(_gateway()), set(_cluster())
    assert not (worker & gateway) and not (worker & cluster) and not (gateway & cluster)
