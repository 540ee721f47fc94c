"""Cluster config document, config version and tool-registry generation.

An admin publishes a config document (:meth:`RedisVersionStore.publish_config`):
one script stores it as JSON, bumps the config version and announces
``{"type": "config", "version": N}`` on the events channel. An MCP reload or a
tool change bumps the registry generation the same way. Workers evict stale
agents when they hear the event and compare :meth:`RedisVersionStore.versions`
(or the versions returned with a lease) at every turn start, so a missed
event cannot let a turn run on a stale agent.

Config documents are validated before they reach Redis
(:func:`cluster.config_secrets.encode_config`, pure): a JSON-safe mapping,
within the size limit, and free of secrets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from cluster.config_secrets import DEFAULT_MAX_CONFIG_BYTES, encode_config, is_secret_key
from cluster.errors import ConfigError
from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = [
    "DEFAULT_MAX_CONFIG_BYTES",
    "HISTORY_LIMIT",
    "ConfigRecord",
    "RedisVersionStore",
    "config_digest",
    "encode_config",
    "is_secret_key",
]

HISTORY_LIMIT = 50
"""Config versions whose document and publish record are kept (show, diff, rollback)."""


def config_digest(data: bytes) -> str:
    """A short digest of an encoded config document (shown in the history)."""
    return hashlib.sha256(data).hexdigest()[:12]


@dataclass(frozen=True)
class ConfigRecord:
    """One publish of the config, as the history keeps it.

    Attributes:
        version: The version it created.
        at: When (Redis server time, Unix seconds).
        author: Who published it (``user@host`` of the CLI, or what the caller gave).
        digest: :func:`config_digest` of the document.
        source: Where the document came from (a file name, ``rollback``, ``api``).
        note: Free text (e.g. ``rollback to 3``).
    """

    version: int
    at: float
    author: str
    digest: str
    source: str = ""
    note: str = ""

    @classmethod
    def from_json(cls, raw: bytes | str) -> ConfigRecord:
        """Read a record as the publish script stored it."""
        data = json.loads(raw)
        return cls(
            version=int(data.get("version", 0)),
            at=float(data.get("at", 0.0)),
            author=str(data.get("author", "")),
            digest=str(data.get("digest", "")),
            source=str(data.get("source", "")),
            note=str(data.get("note", "")),
        )


class RedisVersionStore:
    """Config document and counters in Redis (``{ns}:cfg:{cfg}:*``)."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        max_config_bytes: int = DEFAULT_MAX_CONFIG_BYTES,
    ) -> None:
        """Create the store.

        Args:
            client: A Redis client.
            keyspace: The cluster's keyspace.
            max_config_bytes: Largest accepted encoded config
                (``ClusterSettings.max_config_bytes``).
        """
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)
        self._max_bytes = max_config_bytes

    @property
    def client(self) -> redis.Redis:
        """The Redis client this store uses."""
        return self._client

    def publish_config(
        self,
        config: Mapping[str, Any],
        *,
        author: str = "api",
        source: str = "api",
        note: str = "",
        expect_version: int | None = None,
    ) -> int:
        """Validate, store, record in the history and announce a config document.

        Args:
            config: The document (see :func:`encode_config`; schema checks are
                the caller's, e.g. :func:`cluster.config_schema.parse_config`).
            author: Who publishes it (kept in the history).
            source: Where it came from (a file name, ``rollback``...).
            note: Free text for the history.
            expect_version: Publish only if this is still the current version
                (the one the caller compared the document with).

        Returns:
            The new config version.

        Raises:
            ConfigError: invalid or holding secrets, or ``expect_version`` is
                no longer current (nothing is stored).
            PayloadTooLarge: larger than the limit (nothing is stored).
        """
        data = encode_config(config, max_bytes=self._max_bytes)
        record = {"author": author, "digest": config_digest(data), "source": source, "note": note}
        args: list[bytes | str | int] = [
            data,
            self._keys.events_channel(),
            json.dumps(record),
            HISTORY_LIMIT,
        ]
        if expect_version is not None:
            args.append(expect_version)
        version = self._scripts(
            "config_publish",
            [
                self._keys.config_doc(),
                self._keys.config_version(),
                self._keys.config_docs(),
                self._keys.config_history(),
            ],
            args,
        )
        if int(version) < 0:
            raise ConfigError(
                f"the config changed while this push was checked (it was compared with version "
                f"{expect_version}, now {self.versions()[0]}); push again to compare with the new "
                "one"
            )
        ClusterEventLog(self._client, self._keys).record(
            "config",
            f"config v{int(version)} published by {author} ({source})"
            + (f": {note}" if note else ""),
            version=int(version),
            digest=record["digest"],
        )
        return int(version)

    def config_at(self, version: int) -> dict[str, Any]:
        """The document that ``version`` published.

        Raises:
            ConfigError: no such version, or it fell out of the kept history.
        """
        raw = self._client.hget(self._keys.config_docs(), str(version))
        if raw is None:
            current = self.versions()[0]
            if version < 1 or version > current:
                raise ConfigError(
                    f"config version {version} does not exist (current version is {current})"
                )
            raise ConfigError(
                f"config version {version} is no longer kept (only the last {HISTORY_LIMIT} "
                "versions are); see `agent-cluster config history`"
            )
        return _parse_document(raw)

    def history(self, limit: int = HISTORY_LIMIT) -> list[ConfigRecord]:
        """The last ``limit`` publishes, newest first."""
        raws = self._client.lrange(self._keys.config_history(), 0, max(0, limit - 1))
        return [ConfigRecord.from_json(raw) for raw in raws]

    def current_config(self) -> tuple[int, dict[str, Any]]:
        """The current config version and document (``(0, {})`` before any publish)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._keys.config_version())
        pipe.get(self._keys.config_doc())
        version, doc = pipe.execute()
        if doc is None:
            return int(version or 0), {}
        return int(version or 0), _parse_document(doc)

    def bump_registry_generation(self, reason: str) -> int:
        """Bump the tool registry generation and announce it.

        Args:
            reason: Why (e.g. ``"mcp reload: github"``), carried in the event.

        Returns:
            The new generation.
        """
        generation = self._scripts(
            "registry_bump",
            [self._keys.registry_generation()],
            [self._keys.events_channel(), json.dumps(str(reason))],
        )
        ClusterEventLog(self._client, self._keys).record(
            "registry",
            f"registry generation {int(generation)}: {reason}",
            generation=int(generation),
        )
        return int(generation)

    def ack_registry(self, worker_id: str, generation: int) -> None:
        """Record that ``worker_id`` has re-discovered its tools for ``generation``."""
        self._client.hset(self._keys.registry_acks(), worker_id, int(generation))

    def registry_acks(self, live: list[str]) -> dict[str, int]:
        """The generation each live worker has acknowledged (0: none); forgets gone workers."""
        raw = self._client.hgetall(self._keys.registry_acks())
        acks = {text(k): int(v) for k, v in raw.items()}
        gone = [worker for worker in acks if worker not in live]
        if gone:
            self._client.hdel(self._keys.registry_acks(), *gone)
        return {worker: acks.get(worker, 0) for worker in live}

    def versions(self) -> tuple[int, int]:
        """``(config version, registry generation)``, 0 for a counter never bumped."""
        version, generation = self._client.mget(
            [self._keys.config_version(), self._keys.registry_generation()]
        )
        return int(version or 0), int(generation or 0)


def _parse_document(raw: bytes | str) -> dict[str, Any]:
    parsed = json.loads(raw)
    if not isinstance(parsed, dict):
        raise ConfigError(f"stored config is not a mapping ({type(parsed).__name__}); republish it")
    return parsed
