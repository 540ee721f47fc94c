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

from cluster.durability import Durability
from cluster.endpoints import Endpoint, EndpointTable, parse_endpoints
from cluster.errors import ConfigError
from cluster.keys import check_namespace
from cluster.memory_budget import parse_memory_budget
from cluster.platform_bots import GROUP_SESSIONS, parse_slack_apps, parse_telegram_bots
from cluster.sentinel_url import is_sentinel_url, parse_sentinel_url
from cluster.tenants import limits_by_tenant

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_IDLE_TTL",
    "DEFAULT_SWEEP_INTERVAL",
    "DEFAULT_COLLECT_WINDOW",
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
    "unescaped_password_problem",
]

# Defaults other modules need as plain constants (the agent cache, the worker
# options, the turn runner): defined here once and imported there.
DEFAULT_TURN_TIMEOUT = 600.0
DEFAULT_COLLECT_WINDOW = 2.0
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
_URL_SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel", "unix", "fakeredis")
# Query options whose value is a secret (a Sentinel URL's own password).
_SECRET_QUERY = re.compile(r"([?&]sentinel_password=)[^&#]*")


def redact_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``.

    Works on malformed URLs too: a password holding ``/``, ``?``, ``#`` or
    ``@`` (not percent-encoded) confuses URL parsers, so everything between
    ``scheme://user:`` and the last ``@`` is masked, whatever it contains. A
    Sentinel URL's ``sentinel_password=`` query option is masked too.

    Args:
        url: A Redis URL such as ``redis://user:pw@host:6379/0``.

    Returns:
        The same URL safe to log, e.g. ``redis://user:***@host:6379/0``.
    """
    url = _SECRET_QUERY.sub(r"\1***", url)
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


def unescaped_password_problem(url: str) -> str | None:
    """Why a URL's password breaks its parsing, or ``None`` when it does not.

    A ``/``, ``?`` or ``#`` left raw in the password ends the host part early
    for every URL parser: ``redis://:pa/ss@redis:6379/0`` is host ``""``, port
    ``pa``, path ``/ss@redis:6379/0``, and the client then connects to a host
    taken from the password while a masked message names the real one.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0 or scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
        return None
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=-1)
    if cut < 0 or cut > at:
        return None
    char = rest[cut]
    return (
        f"the password in {redact_url(url)!r} holds an unescaped {char!r}, which ends the host "
        "part early (the client would connect to a host taken from the password): "
        "percent-encode the password's special characters (/ as %2F, ? as %3F, # as %23, "
        "@ as %40, : as %3A)"
    )


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
        raise ConfigError(
            f"cannot read the Redis URL file {os.fspath(path)!r}: {exc.strerror}"
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"the Redis URL file {os.fspath(path)!r} is empty")
    return lines[0]


@dataclass(frozen=True, repr=False)
class ClusterSettings:
    """Everything the cluster layer needs to know, validated on construction.

    Attributes:
        redis_url: ``redis://[user:password@]host:port/db``, ``rediss://...``
            (TLS), ``redis+sentinel://...``/``rediss+sentinel://...``
            (:mod:`cluster.sentinel_url`), ``unix://...`` or ``fakeredis://NAME``
            (embedded, in-process).
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
        collect_window: Debounce of ``collect`` messages, seconds: a turn joins
            the run of collect messages queued after it once none arrived for
            this long; 0 joins what is there at once.
        notify_poll_interval: Seconds between two looks of a worker at the
            background processes it must report the end of
            (``notify_on_complete``), and at those whose worker died.
        concurrency: Turns a worker runs at once.
        cache_size: Cached agents a worker keeps (LRU cap).
        idle_ttl: Seconds without activity after which a cached agent is
            soft-released by the idle sweep.
        sweep_interval: Seconds between idle sweeps.
        agent_cache_memory: A worker's memory budget (``2GiB``, ``80%`` of
            its cgroup limit or RAM; ``""``: none): least recently used idle
            agents are soft-released while its RSS nears it.
        schedules_per_session: Schedules one session may have at once.
        schedule_poll: Seconds between two looks of a worker at due schedules.
        schedule_claim_ttl: Seconds a claimed firing may stay undelivered
            before another worker takes it over.
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
        tenant_requests_per_minute: Requests one tenant's API keys may make
            per minute over every gateway (0: no limit).
        tenant_turns_in_flight: Turns of one tenant accepted and not answered
            yet, over every gateway (0: no limit).
        tenant_limits: Per-tenant overrides of the two limits above,
            ``TENANT=REQUESTS_PER_MINUTE/TURNS_IN_FLIGHT`` comma-separated.
        http_header_timeout: Seconds the gateway waits for a complete request
            head (request line and headers) before closing the connection.
        gateway_max_waiting: Callers one gateway process holds waiting for a
            reply or a stream at once; past it: 503 with ``Retry-After``.
        gateway_redis_connections: Redis connections one gateway process opens
            at most, for accepting messages and for all its waiting callers.
        gateway_sweep_interval: Seconds between two checks of every waiting
            caller's reply list and stream, in case a wake-up signal was lost.
        endpoints: The provider endpoints this worker declares on top of the
            built-in ones (:mod:`cluster.endpoints`); given as a mapping of name
            to ``{provider, base_url, api_key_env}`` (or its YAML text), kept
            as a tuple of :class:`~cluster.endpoints.Endpoint`.
        telegram_bots: Telegram bots the gateway serves, ``NAME=poll|webhook[/TENANT]``
            comma-separated (``cluster.platform_bots``).
        slack_apps: Slack apps the gateway serves, ``NAME[=TENANT]`` comma-separated.
        telegram_api_url: Base URL of the Telegram Bot API.
        slack_api_url: Base URL of the Slack Web API.
        platform_group_sessions: ``chat``: one session per group chat; ``user``:
            one per user in a group chat.
        platform_busy_strategy: What a chat message does while its session's
            turn runs: ``enqueue``, ``interrupt`` or ``rollback``.
        platform_lease_ttl: Seconds a bot's lease (its one poller and reply
            sender) lives unless renewed; a dead holder's bot moves on after it.
        platform_edit_interval: Least seconds between two edits of the message
            that shows a reply while it streams (0: no streaming, the reply is
            sent when complete).
        platform_chat_interval: Least seconds between two sends or edits to
            one chat (0: no pacing).
        redis_durability: ``none``: a write counts once the Redis primary has
            it; ``replica``: an accepted message, a lease grant, a claim and a
            commit count only once every attached replica confirms them (``WAIT``).
        redis_durability_timeout: Milliseconds to wait for that confirmation
            before the write is reported not acknowledged (retryable).
        redis_durability_replicas: Fewest replicas that must confirm a durable
            write (every attached replica must, and at least this many).
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
    collect_window: float = DEFAULT_COLLECT_WINDOW
    notify_poll_interval: float = 1.0
    concurrency: int = DEFAULT_CONCURRENCY
    cache_size: int = DEFAULT_CACHE_SIZE
    idle_ttl: float = DEFAULT_IDLE_TTL
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    agent_cache_memory: str = ""
    schedules_per_session: int = 20
    schedule_poll: float = 1.0
    schedule_claim_ttl: float = 30.0
    log_level: str = "INFO"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    mcp_from_config: bool = False
    workspace_mode: str = "snapshot"
    workspace_snapshot_max_bytes: int = DEFAULT_WORKSPACE_SNAPSHOT_BYTES
    tenant_requests_per_minute: int = 0
    tenant_turns_in_flight: int = 0
    tenant_limits: str = ""
    http_header_timeout: float = 10.0
    gateway_max_waiting: int = 10000
    gateway_redis_connections: int = 8
    gateway_sweep_interval: float = 5.0
    endpoints: tuple[Endpoint, ...] = ()
    redis_durability: str = "none"
    redis_durability_timeout: int = 500
    redis_durability_replicas: int = 1

    def durability(self) -> Durability:
        """When a write counts as acknowledged (:mod:`cluster.durability`)."""
        return Durability(
            self.redis_durability, self.redis_durability_timeout, self.redis_durability_replicas
        )

    def _check_tenant_limits(self) -> None:
        for name in ("tenant_requests_per_minute", "tenant_turns_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"{name} must be a whole number >= 0 (0: no limit), got {value!r}"
                )
        if not isinstance(self.tenant_limits, str):
            raise ConfigError(f"tenant_limits must be a string, got {self.tenant_limits!r}")
        limits_by_tenant(self.tenant_limits)

    telegram_bots: str = ""
    slack_apps: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    slack_api_url: str = "https://slack.com/api/"
    platform_group_sessions: str = "chat"
    platform_busy_strategy: str = "enqueue"
    platform_lease_ttl: float = 5.0
    platform_edit_interval: float = 1.0
    platform_chat_interval: float = 1.0

    def __post_init__(self) -> None:
        _check_url("redis_url", self.redis_url)
        if not (
            isinstance(self.endpoints, tuple)
            and all(isinstance(e, Endpoint) for e in self.endpoints)
        ):
            declared = parse_endpoints(self.endpoints)
            object.__setattr__(self, "endpoints", tuple(declared.values()))
        check_namespace(self.namespace)
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
            "http_header_timeout",
            "gateway_sweep_interval",
            "platform_lease_ttl",
            "schedule_poll",
            "schedule_claim_ttl",
            "notify_poll_interval",
        ):
            _check_positive_float(name, getattr(self, name))
        parse_memory_budget(self.agent_cache_memory)
        self._check_tenant_limits()
        if self.durability().mode == "replica" and self.redis_url.startswith("fakeredis://"):
            raise ConfigError(
                "redis_durability replica needs a Redis with replicas; the embedded "
                "fakeredis:// server has none: set redis_durability to none"
            )
        self._check_platforms()
        self._check_sizes_ports_and_timing()

    def _check_sizes_ports_and_timing(self) -> None:
        for name in ("concurrency", "cache_size", "gateway_max_waiting", "schedules_per_session"):
            _check_positive_int(name, getattr(self, name), unit="a whole number")
        connections = self.gateway_redis_connections
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 3:
            raise ConfigError(
                "gateway_redis_connections must be a whole number >= 3 (one to accept "
                f"messages, one for wake-up signals, one for the rest), got {connections!r}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        rebalance = self.rebalance_idle
        if isinstance(rebalance, bool) or not isinstance(rebalance, int | float) or rebalance < 0:
            raise ConfigError(f"rebalance_idle must be seconds >= 0, got {rebalance!r}")
        window = self.collect_window
        if isinstance(window, bool) or not isinstance(window, int | float) or not window >= 0:
            raise ConfigError(
                f"collect_window must be seconds >= 0 (0: join collect messages at once), "
                f"got {window!r}"
            )
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

    def endpoint_table(self) -> EndpointTable:
        """The endpoints this process may call: the built-ins overlaid with :attr:`endpoints`."""
        return EndpointTable({endpoint.name: endpoint for endpoint in self.endpoints})

    def _check_platforms(self) -> None:
        parse_telegram_bots(self.telegram_bots)
        parse_slack_apps(self.slack_apps)
        for name in ("telegram_api_url", "slack_api_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
        if self.platform_group_sessions not in GROUP_SESSIONS:
            raise ConfigError(
                f"platform_group_sessions must be one of {', '.join(GROUP_SESSIONS)}, "
                f"got {self.platform_group_sessions!r}"
            )
        for name in ("platform_edit_interval", "platform_chat_interval"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 60
            ):
                raise ConfigError(f"{name} must be seconds from 0 to 60 (0: off), got {value!r}")
        if self.platform_busy_strategy not in ("enqueue", "interrupt", "rollback"):
            raise ConfigError(
                "platform_busy_strategy must be one of enqueue, interrupt, rollback, "
                f"got {self.platform_busy_strategy!r}"
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
    if kind is tuple:  # endpoints: a mapping or its YAML text, checked by __post_init__
        return raw
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
    problem = unescaped_password_problem(url)
    if problem:
        raise ConfigError(f"{name} is malformed: {problem}")
    if is_sentinel_url(url):
        parse_sentinel_url(url, shown=redact_url(url))


SETTING_HELP: dict[str, str] = {
    "redis_url": "Redis to use: redis://[user:password@]host:port/db, rediss:// (TLS), unix://, "
    "fakeredis://NAME (embedded), or through Sentinel: "
    "redis+sentinel://[user:password@]host1:port1,host2:port2/SERVICE[/db] (rediss+sentinel:// "
    "for TLS; ?sentinel_password= when the Sentinels have a password of their own). Every "
    "process finds the new primary by itself after a failover. With a password, prefer the "
    "environment variable or --redis-url-file (argv is visible to every local user).",
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
    "collect_window": "Debounce of messages sent with strategy collect, in seconds: the next "
    "turn joins the collect messages queued while a turn ran once none arrived for this long "
    "(0: at once).",
    "notify_poll_interval": "Seconds between two looks of a worker at the background processes "
    "started with notify_on_complete (and at those whose worker died).",
    "concurrency": "Turns a worker runs at once.",
    "cache_size": "Agents a worker keeps cached (LRU cap).",
    "idle_ttl": "Seconds without activity after which a cached agent is soft-released.",
    "sweep_interval": "Seconds between two idle sweeps of a worker's agent cache.",
    "agent_cache_memory": "A worker's memory budget, next to the cache_size cap: a size "
    "(2GiB, 512MB, bytes) or a share of the memory the process may use (80%: of its cgroup v2 "
    "memory.max, else of the host's RAM). While the worker's RSS is above 90% of it, the least "
    "recently used idle agents are soft-released (never one mid-turn), until the estimate of "
    "what they hold brings it under 80%. Empty: no budget.",
    "schedules_per_session": "Schedules (scheduled messages) one session may have at once; "
    "creating one more is refused with 400.",
    "schedule_poll": "Seconds between two looks of each worker at the schedules due (a firing "
    "is sent within about this much of its time).",
    "schedule_claim_ttl": "Seconds a firing claimed by a worker may stay undelivered before "
    "another worker takes it over (the claimer died); the message id makes the second "
    "delivery a no-op if the first went through.",
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
    "tenant_requests_per_minute": "Requests one tenant's API keys may make per minute, counted "
    "in Redis over every gateway (a whole minute may come in one burst); past it: 429 with "
    "Retry-After. 0: no limit.",
    "tenant_turns_in_flight": "Turns of one tenant accepted and not answered yet, counted in "
    "Redis over every gateway; past it: 429 with Retry-After. 0: no limit.",
    "tenant_limits": "Per-tenant overrides of tenant_requests_per_minute and "
    "tenant_turns_in_flight: TENANT=REQUESTS_PER_MINUTE/TURNS_IN_FLIGHT, comma-separated "
    "(e.g. acme=600/8,trial=30/1; 0: no limit for that tenant).",
    "http_header_timeout": "Seconds the gateway waits for a connection's complete request head "
    "(request line and headers) before closing it, so slow-header clients cannot hold "
    "connections.",
    "gateway_max_waiting": "Callers one gateway process holds waiting for a reply or a turn's "
    "stream at once (JSON, SSE and OpenAI streams together); past it the gateway answers 503 "
    "gateway_full with Retry-After, accepting nothing, and /readyz answers 503.",
    "gateway_redis_connections": "Redis connections one gateway process opens at most: one "
    "pool for accepting messages, one subscriber connection for the wake-up signals of all its "
    "waiting callers, and the rest for reading the replies and stream events signalled, in "
    "batches (at least 3).",
    "gateway_sweep_interval": "Seconds between two checks of every waiting caller's reply and "
    "stream, in case a wake-up signal was lost (a Redis restart or failover); signals answer "
    "callers at once, so this bounds only how late a reply can be after a lost signal.",
    "redis_durability": "none: a write counts as soon as the Redis primary has it (a failover "
    "may lose the last writes before the replica got them: a lost message's caller is told to "
    "resubmit); replica: an accepted message, a lease grant, a job claim and a turn's commit are "
    "acknowledged only after WAIT confirms every replica attached to the primary has them (at "
    "least one; Sentinel may promote any of them), so a failover loses nothing acknowledged "
    "(costs one replication round trip per write; see README). Set it on every gateway and "
    "worker.",
    "redis_durability_replicas": "With redis_durability replica: the fewest replicas that must "
    "confirm each write (every replica attached at the time must too). 1 keeps acknowledging "
    "while only one replica is up; set it to the number of replicas you run to close the last "
    "window: a failover Sentinel starts against a primary that is still serving (a false "
    "detection under load) lets that primary acknowledge writes confirmed by the replica not "
    "yet moved to the promoted one, for a second or two; with every replica required, it "
    "cannot (a replica down then stops acknowledgements until it is back).",
    "redis_durability_timeout": "With redis_durability replica: milliseconds to wait for a "
    "replica's confirmation (1-4000); past it the write is not acknowledged: the caller gets "
    "503 not_replicated with Retry-After, a worker defers the turn and begins it again.",
    "endpoints": "Provider endpoints this worker may call, on top of the built-in ones, as a "
    "YAML mapping of name to {provider, base_url, api_key_env}; the cluster config's "
    "model.endpoint chooses one by name, so a config push can never send a key elsewhere. "
    "Built in: offline; openai (https://api.openai.com/v1, key OPENAI_API_KEY); anthropic "
    "(https://api.anthropic.com, key ANTHROPIC_API_KEY); simulator and simulator-anthropic "
    "(http://127.0.0.1:8199/v1 and http://127.0.0.1:8199, no key sent). A declared name "
    "replaces a built-in one. api_key_env names a variable of the worker's environment "
    "(never an AGENT_CLUSTER_* one); without it a placeholder, not a secret, is sent.",
    "telegram_bots": "Telegram bots this gateway serves: NAME=poll or NAME=webhook, optionally "
    "/TENANT (the tenant their sessions belong to; default: default), comma-separated, e.g. "
    "support=poll,sales=webhook/acme. The token comes from AGENT_CLUSTER_TELEGRAM_TOKEN_<NAME> "
    "(and the webhook secret from AGENT_CLUSTER_TELEGRAM_SECRET_<NAME>), never from a setting.",
    "slack_apps": "Slack apps this gateway serves: NAME or NAME=TENANT, comma-separated. The bot "
    "token comes from AGENT_CLUSTER_SLACK_TOKEN_<NAME> and the signing secret from "
    "AGENT_CLUSTER_SLACK_SIGNING_SECRET_<NAME>.",
    "telegram_api_url": "Base URL of the Telegram Bot API (a simulator's in tests and the demo).",
    "slack_api_url": "Base URL of the Slack Web API (a simulator's in tests and the demo).",
    "platform_group_sessions": "chat: one session per group chat (and per thread); user: one "
    "session per user in a group chat.",
    "platform_busy_strategy": "What a chat message does while its session's turn runs: "
    "enqueue (run after it), interrupt (stop it, run this next), rollback (stop it and "
    "discard its messages).",
    "platform_lease_ttl": "Seconds a bot's lease lives unless its holder renews it: exactly "
    "one gateway polls a Telegram token and sends a bot's replies, and another takes over "
    "within this time after the holder dies.",
    "platform_edit_interval": "While a chat's reply is being written, the bot shows it in one "
    "message edited at most once per this many seconds, then puts the final text in it (a "
    "reply past the platform's length limit continues in further messages). 0: no streaming, "
    "the reply is sent when complete.",
    "platform_chat_interval": "Least seconds between two messages or edits a bot sends to one "
    "chat (Telegram allows about one per second per chat and answers 429 past it; every 429 "
    "is waited out and the call made again). 0: no pacing.",
}
"""What each :class:`ClusterSettings` field means (``--help`` and ``docs/settings.md``)."""
