"""The worker's view of the cluster config: applied version, registry generation, profile."""

from __future__ import annotations

import logging
import threading

from cluster.endpoints import EndpointTable
from cluster.versions import RedisVersionStore
from worker.profile import AgentProfile

__all__ = ["ConfigView"]

log = logging.getLogger("worker.config")


class ConfigView:
    """The worker's view of the cluster config: version, registry generation, profile.

    Refreshed when a turn's lease reports a newer version (so a missed event can
    never let a turn run on a stale agent), when an event announces one, and at
    every heartbeat (so an idle worker catches up with a push it did not hear).

    A version lower than one already applied means Redis lost its data (it came
    back empty, or from an old snapshot): the lower version is applied (turns
    keep running) and logged as an error, and :attr:`lost_version` keeps the
    highest version seen until a push made after the loss is applied.
    """

    def __init__(self, versions: RedisVersionStore, *, endpoints: EndpointTable) -> None:
        self._versions = versions
        self._endpoints = endpoints
        self._lock = threading.Lock()
        self.config_version = -1
        self.registry_generation = -1
        self.lost_version = 0
        self.profile = AgentProfile()

    def refresh(
        self, config_version: int | None = None, registry_generation: int | None = None
    ) -> bool:
        """Reload when the given (or current) versions differ; True if the profile changed."""
        with self._lock:
            if (
                config_version is None
                or registry_generation is None
                or config_version < self.config_version  # read before a newer one was applied?
            ):
                config_version, registry_generation = self._versions.versions()
            if (config_version, registry_generation) == (
                self.config_version,
                self.registry_generation,
            ):
                return False
            self._note_version(config_version)
            _, document = self._versions.current_config()
            old = self.profile.busting_digest()
            self.profile = AgentProfile.from_config(
                document, registry_generation=registry_generation, endpoints=self._endpoints
            )
            self.config_version, self.registry_generation = config_version, registry_generation
            return self.profile.busting_digest() != old

    def _note_version(self, version: int) -> None:
        """Say loudly when the config version goes back; note when a later push ends that."""
        if version < self.config_version:
            self.lost_version = max(self.lost_version, self.config_version)
            log.error(
                "the cluster config version went back from %d to %d: Redis lost its data "
                "(restarted empty or from an old snapshot); agents now run config version %d%s. "
                "Push the cluster config again (agent-cluster config push FILE)",
                self.config_version,
                version,
                version,
                " (no config: the offline model)" if version == 0 else "",
            )
        elif self.lost_version and version > self.config_version:
            log.warning(
                "config version %d was published after Redis lost version %d: running it",
                version,
                self.lost_version,
            )
            self.lost_version = 0
