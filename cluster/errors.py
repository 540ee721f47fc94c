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


class ProviderUnavailable(ProviderError):
    """Rate limits, 5xx or timeouts persisted through every retry."""


class ToolError(AgentClusterError):
    """A tool failed; the agent returns this to the model as a tool result."""


class InvalidMessage(AgentClusterError, ValueError):
    """A submitted message is malformed (empty session key, wrong type, ...)."""


class PayloadTooLarge(InvalidMessage):
    """A submitted message or config is larger than the configured limit."""


class LeaseLost(AgentClusterError):
    """The running-turn lease of a session was taken over; this turn may not write."""


class NoLiveWorkers(AgentClusterError):
    """No live, non-draining worker can take the session: start a worker first."""


class UnknownWorker(AgentClusterError):
    """An admin operation named a worker id that is not registered."""


class TurnTimeout(AgentClusterError):
    """A turn's reply did not arrive within the caller's timeout (the turn may still finish)."""


class TurnFailed(AgentClusterError):
    """The worker ran the turn and it failed; the message carries the worker's reason."""


class AgentCacheError(AgentClusterError):
    """The worker's local agent cache was used against its contract (the message says how)."""


class SessionBusy(AgentCacheError):
    """A turn of this session is already checked out on this worker: wait for it to end, then retry."""


__all__ = [
    "AgentCacheError",
    "AgentClusterError",
    "ConfigError",
    "InvalidMessage",
    "LeaseLost",
    "NoLiveWorkers",
    "PayloadTooLarge",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderUnavailable",
    "SessionBusy",
    "ToolError",
    "TurnFailed",
    "TurnTimeout",
    "UnknownWorker",
]
