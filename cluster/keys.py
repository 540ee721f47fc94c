"""The whole Redis keyspace of agent-cluster, built in this one module.

No other module (and no Lua script) spells a key: they ask a :class:`Keyspace`
for it, and Lua scripts receive every key through ``KEYS``, with one
exception: ``turn_claim.lua`` names the rq job hashes of the ids it pops as
``ARGV[2] .. id`` (the key prefix ``rq:job:``), since which jobs it claims is
only known inside the script. ``{ns}`` below is
the configured namespace (``ClusterSettings.namespace``), ``{S}`` a session's
hash tag (see :func:`session_tag`), ``W`` a worker id, ``T`` a tenant name
(``cluster.tenants``: letters, digits, ``_-``, so it is used verbatim), ``P``
a chat platform bot (``telegram.NAME`` or ``slack.NAME``, see
``coordinator.platforms``; its token is never part of a key).

Keys of one session share the Redis Cluster hash tag ``{S}``, so every
session script runs on one slot. Membership keys share ``{m}`` and config keys
``{cfg}`` for the same reason (the tag is namespaced by the key prefix, and a
literal tag is fine: each group is small and hot anyway). Schedule keys share
``{sc}``: a schedule script touches the due set, the claimed firings, the
schedule and its session's index at once.

======================================  ======  ==================  ========================  ===========================
Key                                     Type    TTL                 Written by                Read by
======================================  ======  ==================  ========================  ===========================
``{ns}:m:{m}:live``                     zset    none                worker (register,         coordinator (live set),
                                                                    heartbeat), coordinator   worker
                                                                    (prune): W -> expiry ms
``{ns}:m:{m}:beats``                    zset    none                worker: W -> last beat ms coordinator (status)
``{ns}:m:{m}:state``                    hash    none                worker: W -> active|      coordinator (routing,
                                                                    draining                  drain)
``{ns}:m:{m}:info``                     hash    none                worker: W -> JSON (host,  coordinator (status,
                                                                    pid, queue, started)      enqueue)
``{ns}:m:{m}:instance``                 hash    none                worker (register): W ->   register script (one live
                                                                    process instance token    process per worker id)
``{ns}:m:{m}:recovery``                 string  lock TTL            any worker or             recovery
                                                                    coordinator (recovery
                                                                    lock: one recoverer)
``{ns}:deadletter``                     list    none (capped)       claim, recovery: JSON     operators (status)
                                                                    {job, reason, worker, at}
``{ns}:owned:W``                        set     none                ownership script (index   coordinator (recovery,
                                                                    of sessions W owns; may   drain)
                                                                    hold stale entries)
``{ns}:s:{S}:owner``                    hash    none                ownership script:         coordinator (routing)
                                                                    worker, epoch
``{ns}:s:{S}:lease``                    hash    lease TTL           worker (acquire/extend/   worker, fenced scripts
                                                                    release): token, worker,
                                                                    fence (epoch/token)
``{ns}:s:{S}:fence``                    string  none (never reset)  lease acquire (INCR)      lease acquire
``{ns}:s:{S}:fence_epoch``              string  none (never reset)  lease acquire: "N:replid" lease acquire (a new
                                                                    of the primary it ran on  primary: N + 1)
``{ns}:s:{S}:history``                  list    none                commit script (msgpack    worker (load)
                                                                    message per element)
``{ns}:s:{S}:prompt``                   string  none                worker, fenced (msgpack   worker (load, rebuild)
                                                                    frozen prompt + schemas)
``{ns}:s:{S}:meta``                     hash    none                commit/prompt scripts:    worker, coordinator
                                                                    session_key, created,
                                                                    last_active, turns
``{ns}:s:{S}:processed``                zset    retention (trim)    commit script: msg id ->  commit script (trim)
                                                                    commit time ms
``{ns}:s:{S}:replies``                  hash    retention (trim)    commit script: msg id ->  worker, coordinator
                                                                    msgpack reply             (duplicate delivery)
``{ns}:s:{S}:tools``                    hash    none                tool state store (fenced  tools on any worker
                                                                    when leased): key ->
                                                                    msgpack value
``{ns}:s:{S}:workspace``                hash    none (deleted by    workspace_save script     worker (turn start:
                                        the session's       (fenced by lease and      restore on a new host)
                                        reset)              owner): digest, data
                                                            (zlib msgpack snapshot),
                                                            token, worker, epoch,
                                                            at, files, bytes, omitted
``{ns}:s:{S}:pending``                  zset    none                enqueue script: job id -> worker (turn start: the
                                                                    per-session sequence;     lowest sequence runs
                                                                    commit/complete remove)   first), recovery
``{ns}:s:{S}:folds``                    hash    reply_ttl           enqueue script (steer,    fold script (a running
                                        (refreshed by each  collect): job id -> "s"   turn takes them), commit
                                        mark)               or "c" + arrival ms;      script (removes folded
                                                            commit script removes     ids and its own)
``{ns}:s:{S}:reply:M``                  list    reply_ttl           commit script (atomic     coordinator (BLPOP)
                                                                    with the commit), worker
                                                                    (error replies),
                                                                    enqueue (stored reply)
``{ns}:s:{S}:stream:M``                 stream  reply_ttl           worker (turn events of a  coordinator (HTTP SSE:
                                        (refreshed by each  message that asked for    XREAD from Last-Event-ID,
                                        XADD), MAXLEN ~     streaming: deltas, tools, any instance)
                                        (bounded)           status, final)
``{ns}:notify``                         hash    none (entries       worker (process tool,     every worker's notifier
                                        removed when        notify_on_complete):      (its own processes; the
                                        announced)          session NUL process id    ones of dead workers)
                                                            -> msgpack record
``{ns}:cfg:{cfg}:doc``                  string  none                admin (publish script):   workers
                                                                    JSON config document
``{ns}:cfg:{cfg}:version``              string  none                publish script (INCR)     workers (turn start)
``{ns}:cfg:{cfg}:registry``             string  none                registry bump script      workers (turn start)
                                                                    (INCR)
``{ns}:cfg:{cfg}:docs``                 hash    none (last 50       publish script: version   admin (config show
                                        versions kept)      -> JSON document          --version, diff, rollback)
``{ns}:cfg:{cfg}:history``              list    none (capped    publish script: JSON      admin (config history)
                                        at 50)              {version, author, at,
                                                            digest, source, note},
                                                            newest first
``{ns}:cfg:{cfg}:acks``                 hash    none (gone workers  worker (after MCP         admin (registry bump /
                                        pruned by readers)  re-discovery): W ->       mcp reload wait for every
                                                            registry generation       live worker)
``{ns}:events`` (pub/sub channel)       --      --                  publish scripts, admin    every worker's subscriber
``{ns}:s:{S}:reply:M`` (channel)      --      --                  commit/reset scripts,     the gateway whose caller
                                                                    worker (error replies):   waits (one subscriber
                                                                    wake-up signal, named     connection per gateway
                                                                    like the reply list       process)
``{ns}:s:{S}:stream:M`` (channel)     --      --                  worker (with each turn    the gateway whose SSE
                                                                    event): wake-up signal,   caller waits
                                                                    named like the stream
``{ns}:eventlog``                       stream  none (MAXLEN ~500)  config publish, registry  status page, operators
                                                                    bump, drain request,      (cluster.event_log)
                                                                    worker join/drain,
                                                                    recovery: kind, worker,
                                                                    detail, data (JSON)
``{ns}:t:{T}:rate``                     hash    until the tenant's  gateway (tenant_admit     gateway (admission)
                                        backlog drains      script): tat, the
                                                            request-rate cell
``{ns}:t:{T}:inflight``                 zset    longest entry       gateway (admit: job id -> gateway (admission),
                                        lifetime            expiry ms), worker (ZREM  status
                                                            at commit / error reply)
``{ns}:t:{T}:usage``                    hash    none                worker (after a commit):  status, /metrics
                                                            turns, tokens by kind,
                                                            cost_usd
``{ns}:tenants``                        set     none                worker (after a commit):  status, /metrics
                                                            tenant names with usage
``{ns}:p:{P}:lease``                     hash    platform_lease_ttl  gateway (lease scripts):  gateways (who delivers,
                                                                    token, worker (holder)    who polls)
``{ns}:p:{P}:fence``                     string  none (never reset)  platform lease acquire    platform lease acquire
                                                                    (INCR)
``{ns}:p:{P}:fence_epoch``               string  none (never reset)  platform lease acquire:   platform lease acquire
                                                                    "N:replid" (as sessions')
``{ns}:p:{P}:offset``                    string  none                lease holder (fenced      lease holder (getUpdates
                                                                    script): next update id   offset), status
``{ns}:p:{P}:inbox``                     hash    none (entries       any gateway (accept       lease holder (delivers
                                        removed when        script): message id ->    replies), status (lag)
                                        delivered)          JSON delivery record
``{ns}:p:{P}:done``                      zset    processed_          lease holder (fenced      accept script (duplicate
                                        retention (trim)    delivered script): msg    deliveries)
                                                            id -> delivered ms
``{ns}:p:{P}:previews``                  hash    none (entries       lease holder (fenced      lease holder (a takeover
                                        removed when        hset): msg id -> id of    edits that message, not
                                        delivered)          the streaming message     a new one)
``{ns}:p:{P}:stats``                     hash    none                gateways: accepted,       ``agent-cluster platforms``
                                                                    duplicates, delivered,
                                                                    polled_at, rate_limited
``{ns}:sched:{sc}:due``                 zset    none                schedule scripts: schedule   every worker's schedule
                                                            id -> next firing (ms)    loop (due firings)
``{ns}:sched:{sc}:firing``              zset    none (entries       claim script: "ID:MS" ->  every worker's schedule
                                        removed when        claim deadline (ms)       loop (a dead claimer's
                                        delivered)                                    firings), status
``{ns}:sched:{sc}:def:ID``              hash    none (deleted when  create script (session,   schedule loop (delivery),
                                        cancelled or done)  text, cron or at, next,   coordinator (list)
                                                            created), claim script
                                                            (fired, last_fire,
                                                            claimed_by)
``{ns}:sched:{sc}:by:{S}``              set     none                create/cancel/done        coordinator (list, the
                                                            scripts: the session's    per-session limit)
                                                            schedule ids
``rq:queue:{ns}.worker.W`` (rq's keys)  list    rq's                coordinator (enqueue      worker W (claim),
                                                                    script; a resubmission:   recovery, drain
                                                                    job_rescue.lua puts back
                                                                    a job no list holds),
                                                                    recovery, drain
``rq:job:ID`` (rq's keys)               hash    result_ttl once     enqueue script (rq's      worker (claim)
                                                                    done                      fields + ``ac_worker``:
                                                                                              whose queue holds it,
                                                                                              ``ac_seq``)
``{ns}:inflight:W``                     list    none                worker W (claim: BLMOVE   coordinator (recovery:
                                                                    from its rq queue;        requeue), worker
                                                                    complete: LREM): job ids
``{ns}:health:{W}``                     hash    heartbeat TTL       worker W (each            coordinator (status,
                                                (refreshed by each  heartbeat): record ->     health probe, session)
                                                heartbeat)          JSON health record,
                                                                    cached -> digest of the
                                                                    cached-sessions set
``{ns}:health:{W}:cached``              set     heartbeat TTL       worker W (heartbeat,      coordinator (session:
                                                                    rewritten when its cache  cached on its owner?)
                                                                    changed): session keys
======================================  ======  ==================  ========================  ===========================

``agent-cluster bench``'s stateless-worker baseline (``coordinator.bench.baselines``)
also appends to ``{ns}:s:{S}:history`` itself, in namespaces of its own on
the redis-server the bench starts (never a cluster's Redis).

rq builds its own keys from the queue name; :meth:`Keyspace.worker_queue`
names the queue so that it carries the namespace too. :mod:`cluster.transport`
(with :mod:`cluster.claims` and :mod:`cluster.rq_format`) drives rq's job
hashes (``rq:job:ID``) and the queue's started/finished/failed registries
itself, with rq's classes naming those keys. ID is the job id of
:func:`cluster.jobs.job_id_for`, not the message id: message ids are unique
only within a session, and rq's keys are shared by every namespace on a
Redis, so it is ``<namespace>-<message id>-<12 hex digits>`` (SHA-256 of
namespace, session key and message id), or ``<namespace>-<40 hex digits>``
for a message id that is long or not made of rq's characters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cluster.errors import ConfigError, InvalidMessage

__all__ = [
    "BOT_NAME_RE",
    "PLATFORMS",
    "TENANT_NAME_RE",
    "Keyspace",
    "PlatformKeys",
    "SessionKeys",
    "check_namespace",
    "session_tag",
]

# Session keys made only of these characters (and not too long) are used
# verbatim inside the hash tag, so keys stay readable in redis-cli. Anything
# else (braces would break the tag, spaces, non-ASCII, very long ids) is
# replaced by '#' + SHA-256; a verbatim tag never starts with '#', so the two
# forms cannot collide.
_VERBATIM_RE = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,100}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_WORKER_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")
TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
BOT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PLATFORMS = ("telegram", "slack")


def session_tag(session_key: str) -> str:
    """Return the hash tag content (without braces) for a session key.

    Args:
        session_key: Any non-empty string identifying the conversation.

    Returns:
        The key itself when it is short and made of ``[A-Za-z0-9_.:@/+=-]``,
        otherwise ``'#'`` followed by the hex SHA-256 of its UTF-8 bytes.

    Raises:
        InvalidMessage: ``session_key`` is empty or not a string.
    """
    if not isinstance(session_key, str) or not session_key:
        raise InvalidMessage(f"session key must be a non-empty string, got {session_key!r}")
    if _VERBATIM_RE.match(session_key):
        return session_key
    return "#" + hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()


def _safe_part(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{what} must be a non-empty string, got {value!r}")
    if _VERBATIM_RE.match(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SessionKeys:
    """All keys of one session (they share one hash tag, hence one slot)."""

    owner: str
    lease: str
    fence: str
    fence_epoch: str
    history: str
    prompt: str
    meta: str
    processed: str
    replies: str
    tools: str
    pending: str
    workspace: str


@dataclass(frozen=True)
class PlatformKeys:
    """All keys of one chat platform bot (they share one hash tag, hence one slot)."""

    lease: str
    fence: str
    fence_epoch: str
    offset: str
    inbox: str
    done: str
    stats: str
    previews: str


def check_namespace(namespace: Any) -> str:
    """Return ``namespace`` if it can prefix every key (letters, digits, ``_.-``, 1-32).

    Raises:
        ConfigError: the namespace is empty, too long or has other characters.
    """
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        raise ConfigError(
            f"namespace must be 1-32 characters of letters, digits, '_', '.', '-', "
            f"got {namespace!r}"
        )
    return namespace


class Keyspace:
    """Builds every Redis key (and the pub/sub channel) of one namespace."""

    def __init__(self, namespace: str = "ac") -> None:
        """Create the keyspace.

        Args:
            namespace: Prefix of every key; letters, digits, ``_.-``, at most 32.

        Raises:
            ConfigError: the namespace is empty or has other characters.
        """
        self.namespace = check_namespace(namespace)

    def __repr__(self) -> str:
        return f"Keyspace({self.namespace!r})"

    # -- sessions --------------------------------------------------------

    def _session(self, session_key: str) -> str:
        return f"{self.namespace}:s:{{{session_tag(session_key)}}}"

    def session(self, session_key: str) -> SessionKeys:
        """All keys of one session (see the module table)."""
        base = self._session(session_key)
        return SessionKeys(
            owner=f"{base}:owner",
            lease=f"{base}:lease",
            fence=f"{base}:fence",
            fence_epoch=f"{base}:fence_epoch",
            history=f"{base}:history",
            prompt=f"{base}:prompt",
            meta=f"{base}:meta",
            processed=f"{base}:processed",
            replies=f"{base}:replies",
            tools=f"{base}:tools",
            pending=f"{base}:pending",
            workspace=f"{base}:workspace",
        )

    def tool_state(self, task_id: str) -> str:
        """Hash of persisted tool state of a task (task id == session key, same slot)."""
        return f"{self._session(task_id)}:tools"

    def reply_list(self, session_key: str, message_id: str) -> str:
        """List the worker pushes one message's result to and the caller pops."""
        return f"{self._session(session_key)}:reply:{_safe_part(message_id, 'message id')}"

    def turn_stream(self, session_key: str, message_id: str) -> str:
        """Stream of one message's turn events (deltas, tools, status, final) for SSE clients."""
        return f"{self._session(session_key)}:stream:{_safe_part(message_id, 'message id')}"

    def session_folds(self, session_key: str) -> str:
        """Hash of the session's queued messages a turn may fold in (steer, collect marks)."""
        return f"{self._session(session_key)}:folds"

    def notifications(self) -> str:
        """Hash of background processes whose end a session waits to be told about."""
        return f"{self.namespace}:notify"

    @staticmethod
    def wake_channel(key: str) -> str:
        """Pub/sub channel announcing a write to a reply list or turn stream: the key's own name.

        Channels and keys are separate namespaces in Redis, so a script that
        writes ``KEYS[i]`` signals on ``KEYS[i]`` without building a name.
        """
        return key

    # -- ownership index -----------------------------------------------------

    def owned_sessions(self, worker_id: str) -> str:
        """Set of session keys a worker owns (an index; the owner record is the truth)."""
        return f"{self.namespace}:owned:{self.check_worker_id(worker_id)}"

    # -- membership ----------------------------------------------------------

    def _members(self) -> str:
        return f"{self.namespace}:m:{{m}}"

    def members_live(self) -> str:
        """Sorted set worker id -> heartbeat expiry (ms, Redis clock)."""
        return f"{self._members()}:live"

    def members_beats(self) -> str:
        """Sorted set worker id -> last heartbeat (ms, Redis clock)."""
        return f"{self._members()}:beats"

    def members_state(self) -> str:
        """Hash worker id -> ``active`` | ``draining``."""
        return f"{self._members()}:state"

    def members_info(self) -> str:
        """Hash worker id -> JSON of the worker's static facts (host, pid, queue, ...)."""
        return f"{self._members()}:info"

    def members_instance(self) -> str:
        """Hash worker id -> instance token of the process registered under that id."""
        return f"{self._members()}:instance"

    def recovery_lock(self) -> str:
        """Lock held by whoever recovers dead workers' turns (one at a time)."""
        return f"{self._members()}:recovery"

    def dead_letter(self) -> str:
        """List of entries no worker can run (garbage job ids, undecodable jobs), with reasons."""
        return f"{self.namespace}:deadletter"

    def worker_queue(self, worker_id: str) -> str:
        """Name of a worker's rq queue (rq derives its own keys from it)."""
        return f"{self.namespace}.worker.{self.check_worker_id(worker_id)}"

    def inflight(self, worker_id: str) -> str:
        """List of the job ids a worker has claimed from its queue and not completed yet."""
        return f"{self.namespace}:inflight:{self.check_worker_id(worker_id)}"

    # -- worker health (read from outside the process) ---------------------------

    def worker_health(self, worker_id: str) -> str:
        """Hash of a worker's health record (JSON) and cached-set digest; expires with its heartbeat."""
        return f"{self.namespace}:health:{{{self.check_worker_id(worker_id)}}}"

    def worker_cached(self, worker_id: str) -> str:
        """Set of the session keys a worker had cached at its last heartbeat (same slot as its health)."""
        return f"{self.worker_health(worker_id)}:cached"

    # -- tenants ---------------------------------------------------------------

    def _tenant(self, tenant: str) -> str:
        if not isinstance(tenant, str) or not TENANT_NAME_RE.match(tenant):
            raise InvalidMessage(
                f"tenant must be 1-32 characters of lowercase letters, digits, '_-', got {tenant!r}"
            )
        return f"{self.namespace}:t:{{{tenant}}}"

    def tenant_rate(self, tenant: str) -> str:
        """Hash holding a tenant's request-rate cell (``tat``, ms), shared by every gateway."""
        return f"{self._tenant(tenant)}:rate"

    def tenant_inflight(self, tenant: str) -> str:
        """Sorted set of a tenant's turns in flight: job id -> expiry (ms, Redis clock)."""
        return f"{self._tenant(tenant)}:inflight"

    def tenant_usage(self, tenant: str) -> str:
        """Hash of a tenant's committed turns, provider tokens by kind and estimated cost."""
        return f"{self._tenant(tenant)}:usage"

    def tenants(self) -> str:
        """Set of the tenants that have usage recorded (the index the status reads)."""
        return f"{self.namespace}:tenants"

    # -- chat platforms --------------------------------------------------------

    def platform(self, platform: str, bot: str) -> PlatformKeys:
        """All keys of one bot of a chat platform (``telegram`` or ``slack``).

        Raises:
            InvalidMessage: an unknown platform or a bot name that is not 1-32
                characters of lowercase letters, digits, ``_-``.
        """
        if platform not in PLATFORMS:
            raise InvalidMessage(
                f"platform must be one of {', '.join(PLATFORMS)}, got {platform!r}"
            )
        if not isinstance(bot, str) or not BOT_NAME_RE.match(bot):
            raise InvalidMessage(
                f"bot name must be 1-32 characters of lowercase letters, digits, '_-', got {bot!r}"
            )
        base = f"{self.namespace}:p:{{{platform}.{bot}}}"
        return PlatformKeys(
            lease=f"{base}:lease",
            fence=f"{base}:fence",
            fence_epoch=f"{base}:fence_epoch",
            offset=f"{base}:offset",
            inbox=f"{base}:inbox",
            done=f"{base}:done",
            stats=f"{base}:stats",
            previews=f"{base}:previews",
        )

    # -- scheduled messages ------------------------------------------------------

    def _schedules(self) -> str:
        return f"{self.namespace}:sched:{{sc}}"

    def schedules_due(self) -> str:
        """Sorted set: schedule id -> its next firing (epoch ms); the workers' claim source."""
        return f"{self._schedules()}:due"

    def schedules_firing(self) -> str:
        """Sorted set: claimed firing ``ID:MS`` -> claim deadline (ms); gone once delivered."""
        return f"{self._schedules()}:firing"

    def schedule(self, schedule_id: str) -> str:
        """Hash of one schedule (session, text, cron or at, next firing, counters)."""
        return f"{self._schedules()}:def:{_safe_part(schedule_id, 'schedule id')}"

    def session_schedules(self, session_key: str) -> str:
        """Set of the schedule ids of one session (same slot as every schedule key)."""
        return f"{self._schedules()}:by:{session_tag(session_key)}"

    # -- config, registry, events -------------------------------------------

    def _config(self) -> str:
        return f"{self.namespace}:cfg:{{cfg}}"

    def config_doc(self) -> str:
        """String holding the current JSON config document."""
        return f"{self._config()}:doc"

    def config_version(self) -> str:
        """Counter: the config version (bumped by every publish)."""
        return f"{self._config()}:version"

    def config_docs(self) -> str:
        """Hash: config version -> JSON document, for the last versions (show, diff, rollback)."""
        return f"{self._config()}:docs"

    def config_history(self) -> str:
        """List of JSON publish records (who, when, digest), newest first, capped."""
        return f"{self._config()}:history"

    def registry_generation(self) -> str:
        """Counter: the cluster-wide tool registry generation."""
        return f"{self._config()}:registry"

    def registry_acks(self) -> str:
        """Hash: worker id -> the registry generation whose MCP tools it has re-discovered."""
        return f"{self._config()}:acks"

    def events_channel(self) -> str:
        """Pub/sub channel of cluster events (config, registry, drain, ...)."""
        return f"{self.namespace}:events"

    def event_log(self) -> str:
        """Stream of recent cluster events for operators (pushes, drains, deaths, recoveries)."""
        return f"{self.namespace}:eventlog"

    # -- validation ------------------------------------------------------------

    @staticmethod
    def check_worker_id(worker_id: str) -> str:
        """Return ``worker_id`` if it is usable in keys and queue names.

        Raises:
            InvalidMessage: empty, too long, or characters outside ``[A-Za-z0-9_.:@-]``.
        """
        if not isinstance(worker_id, str) or not _WORKER_RE.match(worker_id):
            raise InvalidMessage(
                f"worker id must be 1-100 characters of letters, digits, '_.:@-', got {worker_id!r}"
            )
        return worker_id
