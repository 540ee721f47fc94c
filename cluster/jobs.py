"""Turn jobs: what a queued message carries, its rq job id, and how a claim and an enqueue report.

Plain data and pure functions (no I/O): :class:`TurnJob` is one accepted
message as the queue carries it (msgpack in rq's job hash), :func:`job_id_for`
names its rq job, :class:`ClaimedTurn` is what a worker's claim hands its
executor, :class:`Enqueued` what the enqueue script decided, and
:func:`decode_turn` reads a job hash's ``data`` (never with pickle).
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import InvalidMessage
from cluster.redis_text import text
from cluster.serialization import MsgpackSerializer, pack

__all__ = [
    "STRATEGIES",
    "TURN_JOB_TAG",
    "ClaimRef",
    "ClaimedTurn",
    "Enqueued",
    "JobFinish",
    "TurnJob",
    "decode_turn",
    "job_id_for",
    "job_id_or_none",
]

STRATEGIES = ("enqueue", "interrupt", "reject", "rollback", "stop", "steer", "collect")
"""Double-texting strategies of a message (what happens while its session's turn runs)."""

TURN_JOB_TAG = "agent_cluster.turn"
"""What rq's job hash names as the job's function: a tag, not a callable.

Turn jobs are run by agent-cluster's own executor, never by an rq worker (it
would find nothing to import and fail the job); the tag lets rq's tooling show
the queues and lets a claim refuse any job that is not a turn."""

# rq job ids are [A-Za-z0-9_-]+; other message ids are digested (see job_id_for).
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# What a job id taken from a queue may look like (job_id_for's output and rq's).
_CLAIMABLE_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def job_id_for(namespace: str, session_key: str, message_id: str) -> str:
    """Return the rq job id of a message.

    rq's job keys (``rq:job:ID``) are shared by every namespace on a Redis,
    and a message id is only unique within its session (like the session
    store's processed set), so the id is scoped to both:
    ``<namespace>-<message id>-<12 hex digits of a digest>`` when the message
    id is short and made of rq's characters (``[A-Za-z0-9_-]``), otherwise
    ``<namespace>-<40 hex digits>``. The digest is SHA-256 over namespace,
    session key and message id, so one message always maps to one job id.
    """
    digest = hashlib.sha256(
        "\0".join((namespace, session_key, message_id)).encode("utf-8", "surrogatepass")
    ).hexdigest()
    prefix = namespace.replace(".", "_")
    if _JOB_ID_RE.match(message_id):
        return f"{prefix}-{message_id}-{digest[:12]}"
    return f"{prefix}-{digest[:40]}"


@dataclass(slots=True)
class ClaimRef:
    """Where a claimed job sits: set on the job at claim time, never queued."""

    worker_id: str
    job_id: str
    queue_name: str
    execution_id: str


@dataclass(frozen=True)
class JobFinish:
    """What a turn's commit script needs to complete its rq job in the same round trip.

    Built by :meth:`cluster.transport.TurnQueue.finish_for`; the session store
    passes it through without knowing rq's keys.
    """

    keys: tuple[str, ...]
    args: tuple[str | bytes | int | float, ...]


@dataclass(frozen=True)
class TurnJob:
    """One accepted user message, as carried by the queue (msgpack-safe).

    Attributes:
        message_id: Caller-chosen id; a message is answered once per id.
        session_key: The conversation the message belongs to.
        text: The user's message.
        submitted_at: Wall-clock time (``time.time()``) the coordinator accepted it.
        attrs: Plain-data extras (platform, user_id, ...), msgpack-safe.
        claim: Set by the worker's claim (not part of the queued job).
    """

    message_id: str
    session_key: str
    text: str
    submitted_at: float
    attrs: dict[str, Any] = field(default_factory=dict)
    claim: ClaimRef | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("message_id", "session_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidMessage(f"turn job {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.text, str):
            raise InvalidMessage(f"turn job text must be a string, got {type(self.text).__name__}")
        stamp = self.submitted_at
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not math.isfinite(stamp)
        ):
            raise InvalidMessage(
                f"turn job submitted_at must be a finite number (time.time()), got {stamp!r}"
            )
        object.__setattr__(self, "submitted_at", float(stamp))
        if not isinstance(self.attrs, Mapping):
            raise InvalidMessage(
                f"turn job attrs must be a mapping, got {type(self.attrs).__name__}"
            )
        bad_keys = [k for k in self.attrs if not isinstance(k, str)]
        if bad_keys:
            raise InvalidMessage(f"turn job attrs keys must be strings, got {bad_keys[0]!r}")
        attrs = dict(self.attrs)
        try:
            pack(attrs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"turn job attrs must be plain data (str, int, float, bool, None, bytes, "
                f"list, dict): {exc}"
            ) from None
        object.__setattr__(self, "attrs", attrs)

    def as_dict(self) -> dict[str, Any]:
        """The job as plain data (the rq job's kwargs)."""
        return {
            "message_id": self.message_id,
            "session_key": self.session_key,
            "text": self.text,
            "submitted_at": self.submitted_at,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TurnJob:
        """Rebuild a job from :meth:`as_dict` output; unknown keys are ignored.

        Raises:
            InvalidMessage: ``data`` is not a mapping, a key is missing or a
                value has the wrong type (the message names which).
        """
        if not isinstance(data, Mapping):
            raise InvalidMessage(f"turn job must be a mapping, got {type(data).__name__}")
        missing = [
            k for k in ("message_id", "session_key", "text", "submitted_at") if k not in data
        ]
        if missing:
            raise InvalidMessage(f"turn job is missing {', '.join(missing)}")
        attrs = data.get("attrs", {})
        return cls(
            message_id=data["message_id"],
            session_key=data["session_key"],
            text=data["text"],
            submitted_at=data["submitted_at"],
            attrs={} if attrs is None else attrs,
        )


@dataclass(frozen=True)
class ClaimedTurn:
    """A turn a worker claimed: the job (whose ``claim`` says where it sits) and when.

    Attributes:
        job: The turn; ``job.claim`` is set.
        claimed_at: Wall-clock time of the claim.
        seq: The message's place in its session (assigned at enqueue; lower runs first).
    """

    job: TurnJob
    claimed_at: float
    seq: int = 0

    @property
    def claim(self) -> ClaimRef:
        claim = self.job.claim
        assert claim is not None, "a claimed turn's job carries its claim"
        return claim

    @property
    def worker_id(self) -> str:
        """The worker whose in-flight list holds it."""
        return self.claim.worker_id

    @property
    def job_id(self) -> str:
        """The rq job id."""
        return self.claim.job_id

    @property
    def queue_name(self) -> str:
        """The rq queue it was claimed from."""
        return self.claim.queue_name

    @property
    def execution_id(self) -> str:
        """This claim's id (the started-registry entry is ``job_id:execution_id``)."""
        return self.claim.execution_id


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`TurnQueue.submit` did with a message.

    Attributes:
        status: ``queued`` (on ``worker_id``'s queue: a new job, or one a Redis
            failover had left pending in none of its worker's lists, put back
            there by ``job_rescue.lua``), ``answered`` (its stored
            reply was pushed again), ``pending`` (its job is still queued or
            running on live ``worker_id``), ``stranded`` (its job sits on dead
            ``worker_id``: recover that worker, then submit again),
            ``reroute`` (submit again with ``worker_id`` as the target; ``""``
            means the proposal was not eligible: refresh the live set),
            ``busy`` (strategy ``reject`` and a turn runs on ``worker_id``) or
            ``stopped`` (strategy ``stop``: the running turn, if any, was told
            to stop; nothing queued).
        worker_id: See ``status``.
        epoch: The session's ownership epoch (``queued`` only).
        seq: The message's place in its session (``queued`` only).
        primary: The replication id of the Redis server the script ran on
            (``""`` where it cannot say): a waiting caller notices a failover
            that lost the message by the primary's id no longer being this one.
    """

    status: str
    worker_id: str
    epoch: int = 0
    seq: int = 0
    primary: str = ""


def job_id_or_none(raw: Any) -> str | None:
    """The job id in a list entry, or ``None`` for garbage (not UTF-8, not rq's alphabet)."""
    try:
        job_id = text(raw)
    except UnicodeDecodeError:
        return None
    return job_id if _CLAIMABLE_RE.match(job_id) else None


def decode_turn(compressed: bytes) -> TurnJob:
    """Decode an rq job's ``data`` field into a :class:`TurnJob` (msgpack only)."""
    try:
        data = zlib.decompress(compressed)
    except zlib.error:
        data = compressed
    try:
        func_name, _instance, _args, kwargs = MsgpackSerializer.loads(data)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"job data is not an rq msgpack payload ({exc})") from None
    if func_name != TURN_JOB_TAG:
        raise InvalidMessage(f"job function is {func_name!r}, expected {TURN_JOB_TAG!r}")
    return TurnJob.from_dict(kwargs)
