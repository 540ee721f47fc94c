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
from cluster.errors import ProviderError, ProviderTimeout, ProviderUnavailable, ProviderUnreachable
from cluster.settings import DEFAULT_MODEL_CALL_DEADLINE

DEFAULT_MAX_TOKENS = 1024
"""Output tokens per model call when the cluster config sets no ``model.max_tokens``."""

KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The worker environment variable holding each provider's api key, unless the
cluster config names another (``providers.<name>.api_key_env``)."""

log = logging.getLogger("agent.providers")

T = TypeVar("T")
_RNG = random.Random()  # jitter only; one per process (seeding one per call costs a syscall)
# A retry that would have less than this many seconds of the deadline left is not tried.
MIN_TRY_SECONDS = 1.0
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
        timeout: seconds this try may take at most (what is left of the
            call's deadline); ``None``: the client's own timeout.
    """

    model: str
    system: str
    tools: Sequence[dict[str, Any]]
    messages: Sequence[Message]
    session_id: str
    reasoning: dict[str, Any] | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    timeout: float | None = None


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
    """Bounded retries with exponential backoff and full jitter, within a total deadline.

    Only errors marked ``retryable`` (rate limits, 5xx, timeouts, dropped
    connections) are retried; auth errors and bad requests fail at once.
    ``deadline`` bounds one model call across all its tries and backoffs
    (``ClusterSettings.model_call_deadline`` on a worker): each try gets
    what is left as its timeout, and no retry starts with less than
    ``MIN_TRY_SECONDS`` left. ``None``: only ``attempts`` bounds it.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    deadline: float | None = DEFAULT_MODEL_CALL_DEADLINE

    def time_left(self, elapsed: float) -> float | None:
        """Seconds of the deadline left after ``elapsed`` seconds (``None``: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - elapsed)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(cap / 2, cap)


def call_with_retries(
    call: Callable[[float | None], T],
    *,
    policy: RetryPolicy,
    provider: str,
    stop: threading.Event | None = None,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``call``, retrying retryable :class:`ProviderError`s per ``policy``.

    Args:
        call: one try; it is given the seconds of the deadline left (its
            timeout), or ``None`` when the policy has no deadline.
        policy: how many tries, the backoff between them, the total deadline.
        provider: named in the messages.
        stop: set when the turn is stopped: no further try.
        sleep: waits out a backoff (an interrupt's ``Event.wait`` cuts it short).
        rng: jitter of the backoff.
        clock: monotonic seconds, for the deadline.

    Raises:
        ProviderUnavailable: the error was still retryable after the last try
            (or the deadline left no time for another); the message says what
            happened: how many tries, how long, timeouts or errors.
        ProviderError: a non-retryable error, at once.
    """
    rng = rng or _RNG
    began = clock()
    last: ProviderError | None = None
    tries = 0
    last_try = 0.0
    out_of_time = False
    for attempt in range(1, policy.attempts + 1):
        tries = attempt
        started = clock()
        try:
            return call(policy.time_left(started - began))
        except ProviderError as exc:
            if not exc.retryable:
                raise
            last, last_try = exc, clock() - started
            if attempt == policy.attempts or (stop is not None and stop.is_set()):
                break
            wait = policy.delay(attempt, rng)
            left = policy.time_left(clock() - began)
            if left is not None and left - wait < MIN_TRY_SECONDS:
                out_of_time = True
                break
            log.warning(
                "%s call failed (%s); retry %d/%d in %.2fs",
                provider,
                exc,
                attempt,
                policy.attempts - 1,
                wait,
            )
            sleep(wait)
    assert last is not None
    raise _gave_up(
        last,
        provider=provider,
        tries=tries,
        last_try=last_try,
        elapsed=clock() - began,
        deadline=policy.deadline if out_of_time else None,
    ) from last


def _gave_up(
    last: ProviderError,
    *,
    provider: str,
    tries: int,
    last_try: float,
    elapsed: float,
    deadline: float | None,
) -> ProviderUnavailable:
    """The error that ends a model call: what happened, how often, how long, what to do."""
    what = f"gave up after {tries} attempt{'s' if tries != 1 else ''} in {elapsed:.1f} s"
    if deadline is not None:
        what += f" (model_call_deadline {deadline:g} s left no time for another)"
    detail = str(last).rstrip(". ")
    if isinstance(last, ProviderUnreachable):
        return ProviderUnreachable(f"{what}: {detail}", provider=provider, retryable=False)
    if isinstance(last, ProviderTimeout):
        return ProviderUnavailable(
            f"{provider}: {what}: the last try timed out after {last_try:.1f} s ({detail}). "
            "The provider is slow or not answering; try again later, or raise "
            "model_call_deadline if its replies take longer.",
            provider=provider,
            retryable=False,
        )
    return ProviderUnavailable(
        f"{provider}: {what}: {detail}. "
        "The provider is rate limiting or failing; try again later or lower the load.",
        provider=provider,
        retryable=False,
    )


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

    def _try_timeout(self, request: ModelRequest) -> dict[str, float]:
        """The SDK's per-request ``timeout``: what is left of the call's deadline, when shorter."""
        if request.timeout is None or request.timeout >= self._key.timeout:
            return {}
        return {"timeout": max(request.timeout, 0.001)}

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
