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
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.tools.sandbox_config import BACKEND_ENV_VAR
from cluster.connection import connect, drop_embedded_server
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator, Reply, TurnHandle
from worker.process import WorkerOptions, WorkerProcess


@contextlib.contextmanager
def _sandbox_default(backend: str) -> Iterator[None]:
    """Make ``backend`` the sandbox default while workers are built, unless one is configured.

    WorkerProcess reads its tool sandbox settings from the process environment
    when it is built (and only then), so setting the variable for the duration
    of the build is enough; it is removed again afterwards.
    """
    if os.environ.get(BACKEND_ENV_VAR):
        yield
        return
    os.environ[BACKEND_ENV_VAR] = backend
    try:
        yield
    finally:
        os.environ.pop(BACKEND_ENV_VAR, None)


class EmbeddedCluster:
    """``with EmbeddedCluster(workers=3) as cluster: cluster.submit("s1", "hi")``."""

    def __init__(
        self,
        *,
        workers: int = 2,
        concurrency: int = 8,
        sandbox_root: Path | None = None,
        settings: ClusterSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.server_name = f"embedded-{uuid.uuid4().hex[:8]}"
        base = settings or ClusterSettings()
        self.settings = dataclasses.replace(base, redis_url=f"fakeredis://{self.server_name}")
        with _sandbox_default("auto"):
            self.workers = self._build_workers(workers, concurrency, sandbox_root, environ)
        self.coordinator: Coordinator | None = None

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
                    environ=dict(os.environ if environ is None else environ),
                ),
            )
            for i in range(workers)
        ]

    def start(self) -> EmbeddedCluster:
        for worker in self.workers:
            worker.start()
        self.coordinator = Coordinator(
            settings=self.settings, client=connect(self.settings.redis_url)
        )
        return self

    def submit(self, session_key: str, text: str, **kwargs: Any) -> Reply:
        assert self.coordinator is not None, "call start() first"
        return self.coordinator.submit(session_key, text, **kwargs)

    def submit_async(self, session_key: str, text: str, **kwargs: Any) -> TurnHandle:
        assert self.coordinator is not None, "call start() first"
        return self.coordinator.submit_async(session_key, text, **kwargs)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)
        if self.coordinator is not None:
            self.coordinator.close()
        drop_embedded_server(self.server_name)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
