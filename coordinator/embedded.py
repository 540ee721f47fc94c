"""Embedded mode: a coordinator and workers in one process on a shared fakeredis.

The same code paths as a real cluster (routing, ownership, leases, rq jobs,
fenced commits), with no Redis server and no API key: the default of the
README's first command and of the end-to-end tests' embedded run.

An embedded cluster is a trusted single-user setup, so unless
``AGENT_CLUSTER_SANDBOX`` says otherwise its tools use the ``auto`` sandbox
backend: ``bwrap`` where it works, else ``local`` with a one-line notice (so
the demo runs on a fresh machine with nothing but Python).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.tools.sandbox_config import BACKEND_ENV_VAR
from cluster.connection import connect, drop_embedded_server
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.admin import drain_worker
from coordinator.ingress import Coordinator, Reply, TurnHandle
from coordinator.status import ClusterStatus, read_status
from worker.process import WorkerOptions, WorkerProcess

# Seconds each worker's drain waits for its running turns when the cluster stops.
_STOP_TIMEOUT = 10.0


class EmbeddedCluster:
    """``with EmbeddedCluster(workers=3) as cluster: cluster.submit("s1", "hi")``."""

    def __init__(
        self,
        *,
        workers: int = 2,
        concurrency: int | None = None,
        sandbox_root: Path | None = None,
        settings: ClusterSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.server_name = f"embedded-{uuid.uuid4().hex[:8]}"
        base = settings or ClusterSettings()
        self.settings = dataclasses.replace(base, redis_url=f"fakeredis://{self.server_name}")
        if concurrency is None:
            concurrency = self.settings.concurrency
        self.workers = self._build_workers(workers, concurrency, sandbox_root, environ)
        self.coordinator: Coordinator | None = None
        self._drained: set[str] = set()
        self._stack = contextlib.ExitStack()  # what start() started, stopped by stop()

    def _build_workers(
        self,
        workers: int,
        concurrency: int,
        sandbox_root: Path | None,
        environ: Mapping[str, str] | None,
    ) -> list[WorkerProcess]:
        return [
            WorkerProcess(
                settings=self.settings,
                options=WorkerOptions(
                    worker_id=f"embedded-{i + 1}",
                    concurrency=concurrency,
                    sandbox_root=sandbox_root,
                    environ=_with_auto_sandbox(os.environ if environ is None else environ),
                ),
            )
            for i in range(workers)
        ]

    def start(self) -> EmbeddedCluster:
        """Start every worker, then the coordinator.

        :meth:`stop` stops them in reverse order; a start that fails part-way
        (a worker that cannot register, say) stops the workers started before
        it, closes every worker's connections and raises.
        """
        with contextlib.ExitStack() as started:
            started.callback(drop_embedded_server, self.server_name)
            for worker in self.workers:
                # Registered before the start: a worker whose start fails closes its pools.
                started.callback(worker.stop, timeout=_STOP_TIMEOUT)
                worker.start()
            coordinator = Coordinator(
                settings=self.settings, client=connect(self.settings.redis_url)
            )
            started.callback(coordinator.close)
            self.coordinator = coordinator
            self._stack = started.pop_all()
        return self

    def submit(self, session_key: str, text: str, **kwargs: Any) -> Reply:
        """Send a message and wait for its reply (see :meth:`Coordinator.submit`)."""
        return self._coordinator().submit(session_key, text, **kwargs)

    def submit_async(self, session_key: str, text: str, **kwargs: Any) -> TurnHandle:
        """Send a message; the handle's ``result()`` waits for the reply."""
        return self._coordinator().submit_async(session_key, text, **kwargs)

    def _coordinator(self) -> Coordinator:
        assert self.coordinator is not None, "call start() first"
        return self.coordinator

    def publish_config(self, config: Mapping[str, Any], *, note: str = "") -> int:
        """Publish a cluster config (as ``agent-cluster config push`` does); returns its version."""
        coordinator = self._coordinator()
        versions = RedisVersionStore(
            coordinator.client,
            coordinator.keyspace,
            max_config_bytes=self.settings.max_config_bytes,
        )
        return versions.publish_config(config, author="embedded", source="embedded", note=note)

    def wait_for_config(self, version: int, timeout: float = 5.0) -> bool:
        """Wait until every running worker has applied config ``version`` (heard the push)."""
        deadline = time.monotonic() + timeout
        while any(w.config.config_version < version for w in self.running_workers()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def running_workers(self) -> list[WorkerProcess]:
        """The workers that are started and not drained."""
        return [w for w in self.workers if w.worker_id not in self._drained]

    def drain(self, worker_id: str, *, timeout: float | None = None) -> bool:
        """Drain one worker as ``agent-cluster drain`` does, then let it leave.

        The worker is marked draining in Redis and the drain is announced (no new
        turn is placed on it from then on); then it does what its main thread
        does on that request: hands queued turns on, finishes running ones,
        soft-releases its agents and deregisters.

        Returns:
            True if every running turn finished within the timeout.
        """
        coordinator = self._coordinator()
        worker = next(w for w in self.workers if w.worker_id == worker_id)
        drain_worker(coordinator.client, coordinator.keyspace, worker_id, timeout=timeout)
        self._drained.add(worker_id)
        return worker.stop(timeout=timeout)

    def status(self) -> ClusterStatus:
        """What ``agent-cluster status`` shows for this cluster."""
        coordinator = self._coordinator()
        return read_status(coordinator.client, coordinator.keyspace)

    def stop(self) -> None:
        """Close the coordinator, drain the workers (last started first), forget the server."""
        self._stack.close()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _with_auto_sandbox(environ: Mapping[str, str]) -> dict[str, str]:
    """The workers' environment, with the ``auto`` sandbox unless one is configured."""
    if environ.get(BACKEND_ENV_VAR):
        return dict(environ)
    return {BACKEND_ENV_VAR: "auto", **environ}
