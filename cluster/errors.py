"""The one exception hierarchy of agent-cluster.

Every error the project raises derives from :class:`AgentClusterError`, and
every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class AgentClusterError(Exception):
    """Root of every error raised by agent-cluster."""


class ConfigError(AgentClusterError, ValueError):
    """A setting or a pushed config is invalid (the message names the key and the fix)."""


class ProviderError(AgentClusterError):
    """A model provider call failed.

    Attributes:
        provider: the provider name ("openai", "anthropic", "offline").
        retryable: whether retrying the same request may succeed.
    """

    def __init__(self, message: str, *, provider: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials: fix the api key, it will not fix itself."""


class ProviderBadRequest(ProviderError):
    """The provider rejected the request as malformed (model name, parameters)."""


class ProviderTimeout(ProviderError):
    """One try of a model call got no (complete) answer within its timeout; retryable."""


class ProviderUnavailable(ProviderError):
    """Rate limits, 5xx or timeouts persisted through every retry."""


class ProviderUnreachable(ProviderUnavailable):
    """No connection to the provider's endpoint (wrong base_url, server down, DNS, TLS)."""


class ToolError(AgentClusterError):
    """A tool failed; the agent returns this to the model as a tool result."""


class InvalidMessage(AgentClusterError, ValueError):
    """A submitted message is malformed (empty session key, wrong type, ...)."""


class PayloadTooLarge(InvalidMessage):
    """A submitted message or config is larger than the configured limit."""


class LeaseLost(AgentClusterError):
    """The running-turn lease of a session was taken over; this turn may not write."""


class LeaseVoided(LeaseLost):
    """A Redis failover voided the lease (granted by an earlier primary): so it did every lease."""


class NoLiveWorkers(AgentClusterError):
    """No live, non-draining worker can take the session: start a worker first."""


class UnknownWorker(AgentClusterError):
    """An admin operation named a worker id that is not registered."""


class WorkerIdInUse(AgentClusterError):
    """Another live worker process already registered this worker id."""

    @classmethod
    def live(cls, worker_id: str, facts: dict[str, object]) -> WorkerIdInUse:
        """The error for an id held by a live process with these registered facts."""
        where = f"pid {facts.get('pid', '?')} on host {facts.get('host', '?')}"
        return cls(
            f"worker id {worker_id!r} is already in use by a live worker ({where}); start this "
            "worker with another --id, or stop that one first (a crashed worker's id is free "
            "again once its heartbeat expires)"
        )


class ClusterUnavailable(AgentClusterError):
    """Redis could not be reached: the message was not accepted (retry it; nothing was lost)."""


class NotReplicated(AgentClusterError):
    """With ``redis_durability: replica``, no replica confirmed a write in time (retryable).

    The write (an accepted message, a lease, a commit) reached the primary but
    may be lost at a failover, so it was not acknowledged: resubmit the
    message with the same id (a message already accepted is not queued twice).

    Attributes:
        retry_after: Seconds after which a retry may succeed.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MessageLost(AgentClusterError):
    """A failover lost an accepted message before it was answered (retryable).

    With ``redis_durability: none`` the promoted replica may not have the
    message: the caller's wait ends with this error instead of waiting for a
    reply that will never come. Resubmit it with the same message id.

    Attributes:
        retry_after: Seconds after which a retry may succeed.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TurnRejected(AgentClusterError):
    """Double texting with strategy ``reject``: a turn of the session is running (send it later)."""


class TurnTimeout(AgentClusterError):
    """A turn's reply did not arrive within the caller's timeout (the turn may still finish)."""


class TurnFailed(AgentClusterError):
    """The worker ran the turn and it failed; the message carries the worker's reason."""


class AgentCacheError(AgentClusterError):
    """The worker's local agent cache was used against its contract (the message says how)."""


class SessionBusy(AgentCacheError):
    """A turn of this session is already checked out on this worker: wait for it to end, retry."""


__all__ = [
    "AgentCacheError",
    "AgentClusterError",
    "ClusterUnavailable",
    "GatewayFull",
    "ConfigError",
    "InvalidMessage",
    "LeaseLost",
    "LeaseVoided",
    "MessageLost",
    "NoLiveWorkers",
    "NotReplicated",
    "PayloadTooLarge",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ProviderUnreachable",
    "SessionBusy",
    "TenantLimited",
    "ToolError",
    "TurnRejected",
    "TurnFailed",
    "TurnTimeout",
    "UnknownWorker",
    "WorkerIdInUse",
]


class RequestRefused(AgentClusterError):
    """An HTTP request the gateway refuses before it reaches the cluster (wrong key, content type).

    Attributes:
        status: The HTTP status to answer with (4xx).
        kind: A short machine-readable reason (``unauthorized``, ``unsupported_media_type``...).
    """

    def __init__(self, message: str, *, status: int, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class TenantLimited(AgentClusterError):
    """A tenant is past one of its limits (requests per minute, turns in flight): retry later.

    Attributes:
        retry_after: Seconds after which a retry can be admitted.
        limit: The limit (``requests_per_minute`` or ``turns_in_flight``).
    """

    def __init__(self, message: str, *, retry_after: float, limit: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit


class GatewayFull(AgentClusterError):
    """A gateway process holds as many waiting callers as it may: retry later or elsewhere.

    Attributes:
        retry_after: Seconds after which a retry may find room.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
