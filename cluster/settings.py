"""Cluster settings: where Redis is, how fast workers heartbeat, how long leases live.

Every setting of a process (cluster-wide timings and limits, and the
per-worker ones: concurrency, cache cap, idle TTL, sweep interval, log level)
is one field of :class:`ClusterSettings`, with its one default and its
meaning in :data:`SETTING_HELP`. One frozen instance is built at start-up,
from command-line flags, ``AGENT_CLUSTER_*`` environment variables and a
settings file, in that order (:mod:`cluster.settings_sources`), and passed to
whatever needs it; ``docs/settings.md`` is generated from these fields. Every bad value raises
:class:`~cluster.errors.ConfigError` naming the key, the value and what is
expected. The Redis password never appears in ``repr``/``str``: use
:meth:`ClusterSettings.redacted_url` (or :func:`redact_url`) when logging.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.errors import ConfigError

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_IDLE_TTL",
    "DEFAULT_SWEEP_INTERVAL",
    "DEFAULT_TURN_TIMEOUT",
    "DEFAULT_WORKSPACE_SNAPSHOT_BYTES",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "SETTING_HELP",
    "URL_FILE_ENV",
    "WORKSPACE_MODES",
    "ClusterSettings",
    "read_url_file",
    "redact_url",
]

# Defaults other modules need as plain constants (the agent cache, the worker
# options, the turn runner): defined here once and imported there.
DEFAULT_TURN_TIMEOUT = 600.0
DEFAULT_MODEL_CALL_DEADLINE = 300.0
DEFAULT_CONCURRENCY = 32
DEFAULT_CACHE_SIZE = 128
DEFAULT_IDLE_TTL = 3600.0
DEFAULT_SWEEP_INTERVAL = 60.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_WORKSPACE_SNAPSHOT_BYTES = 4 * 1024 * 1024
WORKSPACE_MODES = ("snapshot", "shared")

ENV_PREFIX = "AGENT_CLUSTER_"
URL_FILE_ENV = "AGENT_CLUSTER_REDIS_URL_FILE"
"""A file holding the Redis URL (used when ``AGENT_CLUSTER_REDIS_URL`` is not set)."""
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_URL_SCHEMES = ("redis", "rediss", "unix", "fakeredis")


def redact_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``.

    Works on malformed URLs too: a password holding ``/``, ``?``, ``#`` or
    ``@`` (not percent-encoded) confuses URL parsers, so everything between
    ``scheme://user:`` and the last ``@`` is masked, whatever it contains.

    Args:
        url: A Redis URL such as ``redis://user:pw@host:6379/0``.

    Returns:
        The same URL safe to log, e.g. ``redis://user:***@host:6379/0``.
    """
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url if sep else ("***" if "@" in url else url)
    userinfo, _, hostpart = rest.rpartition("@")
    if not sep:
        return f"***@{hostpart}"
    user, colon, _password = userinfo.partition(":")
    if not colon:  # redis://secret@host: redis-py reads it as a user name; it may be a password
        return f"{scheme}://***@{hostpart}"
    return f"{scheme}://{user}:***@{hostpart}"


def read_url_file(path: str | os.PathLike[str]) -> str:
    """Read a Redis URL from a file (first line, whitespace stripped).

    Keeps the password out of the process list (``--redis-url-file``,
    ``AGENT_CLUSTER_REDIS_URL_FILE``).

    Raises:
        ConfigError: the file cannot be read or holds no URL.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(64 * 1024)
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis URL file {os.fspath(path)!r}: {exc.strerror}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"the Redis URL file {os.fspath(path)!r} is empty")
    return lines[0]


@dataclass(frozen=True, repr=False)
class ClusterSettings:
    """Everything the cluster layer needs to know, validated on construction.

    Attributes:
        redis_url: ``redis://[user:password@]host:port/db``, ``rediss://...``
            (TLS), ``unix://...`` or ``fakeredis://NAME`` (embedded, in-process).
        namespace: Prefix of every key (letters, digits, ``_.-``; at most 32).
        heartbeat_interval: Seconds between two worker heartbeats.
        heartbeat_ttl: Seconds without a heartbeat after which a worker is dead;
            at least twice the interval, so one late beat is not a death.
        lease_ttl: Seconds a running-turn lease lives unless extended; the
            worker extends it while the turn runs.
        turn_timeout: Seconds a turn may run before it is abandoned.
        drain_timeout: Seconds a draining worker waits for running turns.
        model_call_deadline: Seconds one model call may take across all its
            tries and backoffs (each try's timeout is what is left of it).
        max_message_bytes: Largest accepted user message / reply, in bytes.
        max_config_bytes: Largest accepted config document (encoded), in bytes.
        processed_retention: Seconds a processed message id (and its stored
            reply) is remembered, so a redelivered message is answered once.
        reply_ttl: Seconds a per-message reply list lives for the caller to read.
        rebalance_idle: Seconds a sticky session must be idle (nothing pending
            or running) before it moves to a worker that joined and is now its
            ring owner; 0 keeps sessions where they are.
        concurrency: Turns a worker runs at once.
        cache_size: Cached agents a worker keeps (LRU cap).
        idle_ttl: Seconds without activity after which a cached agent is
            soft-released by the idle sweep.
        sweep_interval: Seconds between idle sweeps.
        log_level: DEBUG, INFO, WARNING or ERROR.
        metrics_port: TCP port of a worker's probe endpoint (Prometheus
            ``/metrics``, ``/livez``, ``/readyz``); 0 serves none.
        metrics_host: Address the worker's probe endpoint listens on.
        mcp_from_config: Whether a worker starts the ``mcp_servers`` of the
            cluster config (programs run outside the sandbox: whoever can push
            a config could run any program on the worker).
        workspace_mode: ``snapshot``: workspaces live on each worker's own disk
            and follow a moved session as snapshots in Redis; ``shared``:
            ``AGENT_CLUSTER_HOME`` is on storage every worker mounts (NFS,
            a ReadWriteMany volume), so no snapshot is taken.
        workspace_snapshot_max_bytes: File bytes one workspace snapshot carries
            at most; files past it are listed to the agent, not copied.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "ac"
    heartbeat_interval: float = 1.5
    heartbeat_ttl: float = 5.0
    lease_ttl: float = 30.0
    turn_timeout: float = DEFAULT_TURN_TIMEOUT
    drain_timeout: float = 120.0
    model_call_deadline: float = DEFAULT_MODEL_CALL_DEADLINE
    max_message_bytes: int = 256 * 1024
    max_config_bytes: int = 1024 * 1024
    processed_retention: float = 7 * 24 * 3600.0
    reply_ttl: float = 600.0
    rebalance_idle: float = 60.0
    concurrency: int = DEFAULT_CONCURRENCY
    cache_size: int = DEFAULT_CACHE_SIZE
    idle_ttl: float = DEFAULT_IDLE_TTL
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    log_level: str = "INFO"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    mcp_from_config: bool = False
    workspace_mode: str = "snapshot"
    workspace_snapshot_max_bytes: int = DEFAULT_WORKSPACE_SNAPSHOT_BYTES

    def __post_init__(self) -> None:
        _check_url("redis_url", self.redis_url)
        if not isinstance(self.namespace, str) or not _NAMESPACE_RE.match(self.namespace):
            raise ConfigError(
                f"namespace must be 1-32 characters of letters, digits, '_', '.', '-', "
                f"got {self.namespace!r}"
            )
        for name in (
            "heartbeat_interval",
            "heartbeat_ttl",
            "lease_ttl",
            "turn_timeout",
            "drain_timeout",
            "model_call_deadline",
            "processed_retention",
            "reply_ttl",
            "idle_ttl",
            "sweep_interval",
        ):
            _check_positive_float(name, getattr(self, name))
        for name in ("concurrency", "cache_size"):
            _check_positive_int(name, getattr(self, name), unit="a whole number")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        rebalance = self.rebalance_idle
        if isinstance(rebalance, bool) or not isinstance(rebalance, int | float) or rebalance < 0:
            raise ConfigError(f"rebalance_idle must be seconds >= 0, got {rebalance!r}")
        for name in ("max_message_bytes", "max_config_bytes", "workspace_snapshot_max_bytes"):
            _check_positive_int(name, getattr(self, name))
        if self.workspace_mode not in WORKSPACE_MODES:
            raise ConfigError(
                f"workspace_mode must be one of {', '.join(WORKSPACE_MODES)}, "
                f"got {self.workspace_mode!r}"
            )
        port = self.metrics_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"metrics_port must be a TCP port 0-65535 (0: off), got {port!r}")
        if not isinstance(self.metrics_host, str) or not self.metrics_host:
            raise ConfigError(
                f"metrics_host must be an address such as 0.0.0.0, got {self.metrics_host!r}"
            )
        if self.heartbeat_ttl < 2 * self.heartbeat_interval:
            raise ConfigError(
                f"heartbeat_ttl must be at least twice heartbeat_interval "
                f"({2 * self.heartbeat_interval:g} s), got {self.heartbeat_ttl:g} s: "
                "a single late heartbeat would declare the worker dead"
            )

    def redacted_url(self) -> str:
        """The Redis URL with its password masked, safe for logs."""
        return redact_url(self.redis_url)

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = self.redacted_url() if f.name == "redis_url" else getattr(self, f.name)
            fields.append(f"{f.name}={value!r}")
        return f"ClusterSettings({', '.join(fields)})"

    __str__ = __repr__

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ClusterSettings:
        """Build settings from a mapping of field names to values.

        Strings are converted to the field's type (so YAML and env values work).

        Args:
            values: e.g. ``{"redis_url": "...", "heartbeat_ttl": 5}``; missing
                keys take their defaults.

        Raises:
            ConfigError: an unknown key or a value of the wrong type/range.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"cluster settings must be a mapping, got {type(values).__name__}")
        return cls.from_values(values, key_name=lambda name: name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSettings:
        """Build settings from ``AGENT_CLUSTER_<FIELD>`` variables.

        The Redis URL comes from ``AGENT_CLUSTER_REDIS_URL`` or, when that is
        unset, from the file named by ``AGENT_CLUSTER_REDIS_URL_FILE``.

        Args:
            environ: The environment to read; ``os.environ`` when omitted.

        Raises:
            ConfigError: a variable holds a bad value (the message names the variable).
        """
        env = os.environ if environ is None else environ
        names = {f.name for f in dataclasses.fields(cls)}
        values = {
            name: env[ENV_PREFIX + name.upper()]
            for name in names
            if ENV_PREFIX + name.upper() in env
        }
        if "redis_url" not in values and env.get(URL_FILE_ENV):
            values["redis_url"] = read_url_file(env[URL_FILE_ENV])
        return cls.from_values(values, key_name=lambda name: ENV_PREFIX + name.upper())

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], *, key_name: Callable[[str], str]
    ) -> ClusterSettings:
        """Build settings from raw values (strings converted), naming keys with ``key_name``.

        ``key_name(field)`` is how an error names the key (a flag, a variable, a file key).

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in fields:
                raise ConfigError(
                    f"unknown cluster setting {name!r}; expected one of {', '.join(sorted(fields))}"
                )
            default = fields[name].default
            kwargs[name] = _coerce(key_name(name), raw, type(default))
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            message = str(exc)
            for name in fields:
                if message.startswith(name + " "):
                    message = key_name(name) + message[len(name) :]
                    break
            raise ConfigError(message) from None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(key: str, raw: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    if kind is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key} must be a string, got {raw!r}")
        return raw.upper() if key.lower().endswith("log_level") else raw
    if isinstance(raw, bool):
        raise ConfigError(f"{key} must be a number, got {raw!r}")
    if kind is int:
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw.strip()) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of seconds, got {raw!r}") from None
    return value


def _check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _check_positive_int(name: str, value: Any, *, unit: str = "a whole number of bytes") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be {unit} > 0, got {value!r}")


def _check_url(name: str, url: Any) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{name} must be a URL such as redis://host:6379/0, got {url!r}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _URL_SCHEMES:
        raise ConfigError(
            f"{name} must start with one of {', '.join(s + '://' for s in _URL_SCHEMES)}, "
            f"got {redact_url(url)!r}"
        )


SETTING_HELP: dict[str, str] = {
    "redis_url": "Redis to use: redis://[user:password@]host:port/db, rediss:// (TLS), unix://, "
    "fakeredis://NAME (embedded). With a password, prefer the environment variable or "
    "--redis-url-file (argv is visible to every local user).",
    "namespace": "Prefix of every Redis key; clusters sharing a Redis need different ones.",
    "heartbeat_interval": "Seconds between two heartbeats of a worker.",
    "heartbeat_ttl": "Seconds without a heartbeat after which a worker is dead and its turns "
    "move on (at least twice heartbeat_interval).",
    "lease_ttl": "Seconds a running-turn lease lives unless extended (the worker extends it "
    "while the turn runs).",
    "turn_timeout": "Seconds a turn may run before it is abandoned; also how long the "
    "coordinator waits for a reply.",
    "drain_timeout": "Seconds a draining worker lets running turns finish before cutting them "
    "off and handing them on.",
    "model_call_deadline": "Seconds one model call may take in all, across its tries and the "
    "backoff between them (each try's timeout is what is left, at most 120 s); then the turn "
    "answers with an error saying what happened (timeouts or errors, how many tries, how long).",
    "max_message_bytes": "Largest accepted message text or reply, in bytes.",
    "max_config_bytes": "Largest accepted config document (encoded), in bytes.",
    "processed_retention": "Seconds a processed message id and its reply are remembered, so "
    "a redelivered message is answered once.",
    "reply_ttl": "Seconds a reply waits in Redis for its caller.",
    "rebalance_idle": "Seconds a session must be idle before it moves to a worker that joined "
    "and now owns it on the ring; 0 keeps sessions where they are.",
    "concurrency": "Turns a worker runs at once.",
    "cache_size": "Agents a worker keeps cached (LRU cap).",
    "idle_ttl": "Seconds without activity after which a cached agent is soft-released.",
    "sweep_interval": "Seconds between two idle sweeps of a worker's agent cache.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
    "mcp_from_config": "Start the MCP servers the cluster config names (true/false). They run "
    "as the worker's user outside the sandbox, so whoever can push a config could run any "
    "program on this worker; off by default, turn it on only where Redis writers are trusted.",
    "metrics_port": "TCP port of a worker's probe endpoint: Prometheus /metrics, /livez "
    "(liveness), /readyz (registered, beating, active); 0 serves none.",
    "metrics_host": "Address the worker's probe endpoint listens on (0.0.0.0 in a container, "
    "so the kubelet and Prometheus reach it).",
    "workspace_mode": "snapshot: session workspaces live on each worker's own disk and follow a "
    "moved session as snapshots in Redis (taken at the end of turns that changed them and at "
    "a drain, restored by the new owner); shared: AGENT_CLUSTER_HOME is on storage every "
    "worker mounts (NFS, a ReadWriteMany volume), so no snapshot is taken.",
    "workspace_snapshot_max_bytes": "File bytes one workspace snapshot carries at most; files "
    "past it are not copied and the agent is told which.",
}
"""What each :class:`ClusterSettings` field means (``--help`` and ``docs/settings.md``)."""
