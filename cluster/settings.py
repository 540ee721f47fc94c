"""Cluster settings: where Redis is, how fast workers heartbeat, how long leases live.

One frozen :class:`ClusterSettings` is built at start-up, either from the
environment (:meth:`ClusterSettings.from_env`, variables ``AGENT_CLUSTER_*``)
or from a mapping (:meth:`ClusterSettings.from_mapping`, e.g. a YAML section),
and passed to whatever needs it. Every bad value raises
:class:`~cluster.errors.ConfigError` naming the key, the value and what is
expected. The Redis password never appears in ``repr``/``str``: use
:meth:`ClusterSettings.redacted_url` (or :func:`redact_url`) when logging.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cluster.errors import ConfigError

__all__ = ["ENV_PREFIX", "URL_FILE_ENV", "ClusterSettings", "read_url_file", "redact_url"]

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
        max_message_bytes: Largest accepted user message / reply, in bytes.
        max_config_bytes: Largest accepted config document (encoded), in bytes.
        processed_retention: Seconds a processed message id (and its stored
            reply) is remembered, so a redelivered message is answered once.
        reply_ttl: Seconds a per-message reply list lives for the caller to read.
        rebalance_idle: Seconds a sticky session must be idle (nothing pending
            or running) before it moves to a worker that joined and is now its
            ring owner; 0 keeps sessions where they are.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "ac"
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 5.0
    lease_ttl: float = 30.0
    turn_timeout: float = 600.0
    drain_timeout: float = 120.0
    max_message_bytes: int = 256 * 1024
    max_config_bytes: int = 1024 * 1024
    processed_retention: float = 7 * 24 * 3600.0
    reply_ttl: float = 600.0
    rebalance_idle: float = 60.0

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
            "processed_retention",
            "reply_ttl",
        ):
            _check_positive_float(name, getattr(self, name))
        rebalance = self.rebalance_idle
        if isinstance(rebalance, bool) or not isinstance(rebalance, int | float) or rebalance < 0:
            raise ConfigError(f"rebalance_idle must be seconds >= 0, got {rebalance!r}")
        for name in ("max_message_bytes", "max_config_bytes"):
            _check_positive_int(name, getattr(self, name))
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
        return cls._build(values, key_name=lambda name: name)

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
        return cls._build(values, key_name=lambda name: ENV_PREFIX + name.upper())

    @classmethod
    def _build(cls, values: Mapping[str, Any], *, key_name: Any) -> ClusterSettings:
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


def _coerce(key: str, raw: Any, kind: type) -> Any:
    if kind is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key} must be a string, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise ConfigError(f"{key} must be a number, got {raw!r}")
    if kind is int:
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw.strip()) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number of bytes, got {raw!r}") from None
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


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a whole number of bytes > 0, got {value!r}")


def _check_url(name: str, url: Any) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{name} must be a URL such as redis://host:6379/0, got {url!r}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _URL_SCHEMES:
        raise ConfigError(
            f"{name} must start with one of {', '.join(s + '://' for s in _URL_SCHEMES)}, "
            f"got {redact_url(url)!r}"
        )
