"""What every model provider implements, and the shared retry policy."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from agent.messages import Message, Usage
from agent.providers.clients import ClientKey, ClientRef, SharedClients, shared_clients
from agent.providers.http import Call
from cluster.errors import ProviderError, ProviderUnavailable, ProviderUnreachable

DEFAULT_MAX_TOKENS = 1024
"""Output tokens per model call when the cluster config sets no ``model.max_tokens``."""

KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The worker environment variable holding each provider's api key, unless the
cluster config names another (``providers.<name>.api_key_env``)."""

log = logging.getLogger("agent.providers")

T = TypeVar("T")
_RNG = random.Random()  # jitter only; one per process (seeding one per call costs a syscall)
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class ModelRequest:
    """One model call in neutral terms; each provider translates it to its wire format.

    Attributes:
        model: the provider's model name.
        system: the frozen system prompt (the same object every turn).
        tools: neutral tool schemas in their frozen order.
        messages: the conversation so far, neutral format.
        session_id: sent as the provider's cache-routing key where it has one.
        reasoning: the per-turn reasoning config (e.g. ``{"effort": "low"}``) or None.
        max_tokens: output cap for this call.
    """

    model: str
    system: str
    tools: Sequence[dict[str, Any]]
    messages: Sequence[Message]
    session_id: str
    reasoning: dict[str, Any] | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass
class ModelResponse:
    """The assistant's reply to one call: text, tool calls and usage."""

    text: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None


class Provider(Protocol):
    """A model provider bound to one SDK client.

    ``client`` is the SDK client object (None once closed). ``complete`` streams
    text deltas to ``on_delta`` when given and stops early when ``should_stop``
    returns True. ``abort`` is called from another thread to break this
    provider's call that is stuck in I/O (the call raises at once); the next
    call works as usual.
    """

    name: str

    @property
    def client(self) -> Any: ...

    def complete(
        self,
        request: ModelRequest,
        *,
        on_delta: DeltaCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ModelResponse: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Only errors marked ``retryable`` (rate limits, 5xx, timeouts, dropped
    connections) are retried; auth errors and bad requests fail at once.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(cap / 2, cap)


def call_with_retries(
    call: Callable[[], T],
    *,
    policy: RetryPolicy,
    provider: str,
    stop: threading.Event | None = None,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``call``, retrying retryable :class:`ProviderError`s per ``policy``.

    Raises:
        ProviderUnavailable: the error was still retryable after the last attempt.
        ProviderError: a non-retryable error, at once.
    """
    rng = rng or _RNG
    last: ProviderError | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except ProviderError as exc:
            if not exc.retryable:
                raise
            last = exc
            if attempt == policy.attempts or (stop is not None and stop.is_set()):
                break
            wait = policy.delay(attempt, rng)
            log.warning(
                "%s call failed (%s); retry %d/%d in %.2fs",
                provider,
                exc,
                attempt,
                policy.attempts - 1,
                wait,
            )
            sleep(wait)
    if isinstance(last, ProviderUnreachable):
        raise ProviderUnreachable(
            f"gave up after {policy.attempts} attempts: {last}",
            provider=provider,
            retryable=False,
        ) from last
    raise ProviderUnavailable(
        f"{provider}: gave up after {policy.attempts} attempts: {last}. "
        "The provider is rate limiting or failing; try again later or lower the load.",
        provider=provider,
        retryable=False,
    ) from last


class SDKClientHolder:
    """A provider's hold on the worker's shared SDK client for its endpoint and key.

    Subclasses implement ``_new_client(http_client)`` (called once per
    endpoint and key in the process, see :mod:`agent.providers.clients`) and
    run each request inside :meth:`_calling`, so that :meth:`abort` can cut
    this provider's in-flight call without touching anyone else's.
    """

    name = "sdk"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float = 120.0,
        clients: SharedClients | None = None,
    ) -> None:
        self._base_url = base_url
        self._key = ClientKey.of(self.name, base_url, api_key, timeout)
        self._api_key = api_key
        self._clients = clients if clients is not None else shared_clients()
        self._lock = threading.Lock()
        self._ref: ClientRef | None = self._clients.acquire(self._key, self._new_client)
        self._call: Call | None = None

    @property
    def client(self) -> Any:
        """The shared SDK client, or None once this provider let go of it."""
        ref = self._ref
        return ref.client if ref is not None else None

    def _new_client(self, http_client: Any) -> Any:
        raise NotImplementedError

    @contextmanager
    def _calling(self, should_stop: Callable[[], bool]) -> Iterator[Any]:
        """Hold the client for one request on this thread; yields the SDK client.

        A stop requested before the call was registered aborts it at once
        (``abort`` sets the stop first, then looks for the call).
        """
        with self._lock:
            if self._ref is None:  # released earlier: this provider is used again
                self._ref = self._clients.acquire(self._key, self._new_client)
            ref = self._ref
        with ref.call() as call:
            self._call = call
            if should_stop():
                call.abort()
            try:
                yield ref.client
            finally:
                self._call = None

    def abort(self) -> None:
        """Cut this provider's in-flight call (it fails at once); the shared client stays open."""
        call = self._call
        if call is not None:
            call.abort()

    def close(self) -> None:
        """Let go of the shared client (never closes it under another agent); ``client`` is None."""
        with self._lock:
            ref, self._ref = self._ref, None
        if ref is not None:
            ref.release()
