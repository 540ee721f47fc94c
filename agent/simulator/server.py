"""The provider simulator: a local HTTP server the official SDKs talk to unchanged.

:class:`ProviderSimulator` answers OpenAI ``POST /v1/chat/completions`` and
Anthropic ``POST /v1/messages`` (JSON or server-sent events), with replies
from a queue of scripted replies or else the deterministic policy
(:func:`~agent.providers.reply_policy.decide_reply`). It simulates prompt caching
and pricing (usage in each provider's format, totals at ``GET /stats``),
records the last requests, injects faults and paces replies to a configured
latency. :func:`serve` runs one in the foreground for the
``agent-cluster simulate-llm`` command.

This module holds the lifecycle and the test controls;
:mod:`~agent.simulator.completions` decides what a chat request gets and
:mod:`~agent.simulator._http` does the socket work (reading, pacing, writing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from agent.providers.reply_policy import PolicyReply
from agent.simulator._http import Outcome, SimulatorHTTPServer
from agent.simulator.completions import SimulatorState, answer_completion, answer_count_tokens
from agent.simulator.control import control_outcome
from agent.simulator.faults import Fault, parse_fault
from agent.simulator.prompt_cache import PromptCache
from agent.simulator.recording import RecordedRequest, RequestLog
from cluster.errors import ConfigError

__all__ = ["ProviderSimulator", "serve"]

_COMPLETION_PATHS = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}


def _check_latency(ttft: float, tokens_per_second: float | None) -> None:
    if ttft < 0 or (tokens_per_second is not None and tokens_per_second <= 0):
        raise ConfigError(
            f"latency: ttft must be >= 0 and tokens_per_second > 0 or None, "
            f"got ttft={ttft}, tokens_per_second={tokens_per_second}"
        )


class ProviderSimulator:
    """A local OpenAI + Anthropic compatible server with caching, pricing and faults.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`) and point
    the SDKs at it: ``openai.OpenAI(api_key=..., base_url=sim.openai_base_url)``,
    ``anthropic.Anthropic(api_key=..., base_url=sim.anthropic_base_url)``. Any
    api key works except one starting with ``"bad"`` (401).

    Args:
        host: interface to listen on.
        port: TCP port, 0 for a free one (see :attr:`url`).
        ttft: seconds before the first token of every reply.
        tokens_per_second: generation speed; None answers at once.
        cache_ttl: seconds a prompt-cache entry lives after its last use.
        openai_min_cache_tokens: shortest prompt OpenAI caches.
        anthropic_min_cache_tokens: shortest prefix an Anthropic breakpoint caches.
        clock: monotonic clock of the prompt cache (a fake one in tests).
        max_recorded_requests: how many requests :meth:`recorded_requests` keeps.
        openai_cache_step: OpenAI caches prefixes in steps of this many tokens.
        context_window: most prompt tokens a request may have; a longer one is
            refused with 400 as a real model's context window refuses it (None: no limit).

    Raises:
        ConfigError: a latency or cache setting is out of range.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ttft: float = 0.0,
        tokens_per_second: float | None = None,
        cache_ttl: float = 300.0,
        openai_min_cache_tokens: int = 1024,
        anthropic_min_cache_tokens: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        max_recorded_requests: int = 200,
        openai_cache_step: int = 128,
        context_window: int | None = None,
    ) -> None:
        _check_latency(ttft, tokens_per_second)
        if context_window is not None and context_window < 1:
            raise ConfigError(f"context_window must be >= 1 token or None, got {context_window}")
        self._host = host
        self._port = port
        cache = PromptCache(
            ttl=cache_ttl,
            clock=clock,
            openai_min_tokens=openai_min_cache_tokens,
            openai_step=openai_cache_step,
            anthropic_min_tokens=anthropic_min_cache_tokens,
        )
        self._state = SimulatorState(
            cache=cache,
            log=RequestLog(max_recorded_requests),
            ttft=ttft,
            tokens_per_second=tokens_per_second,
            context_window=context_window,
        )
        self._httpd: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ProviderSimulator:
        """Bind the port and serve in a background thread; returns self.

        Raises:
            ConfigError: the simulator is already running.
        """
        if self._httpd is not None:
            raise ConfigError("the provider simulator is already running; stop() it first")
        self._httpd = SimulatorHTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"provider-simulator:{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: cut open connections, wake paced replies, join threads. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.close_all()
        if thread is not None:
            thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server.

        Raises:
            ConfigError: the simulator is not running.
        """
        if self._httpd is None:
            raise ConfigError("the provider simulator is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` (the server root + ``/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the server root)."""
        return self.url

    # -- test controls -----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Usage totals overall and per provider (the ``GET /stats`` JSON)."""
        state = self._state
        with state.lock:
            snapshot = state.stats.snapshot()
            snapshot["cache_entries"] = len(state.cache)
        return snapshot

    def reset_stats(self) -> None:
        """Zero the usage totals (the prompt cache and recordings are kept)."""
        with self._state.lock:
            self._state.stats.reset()

    def clear_cache(self) -> None:
        """Forget every prompt-cache entry (a cold provider)."""
        with self._state.lock:
            self._state.cache.clear()

    def recorded_requests(self) -> list[RecordedRequest]:
        """The last provider requests received, oldest first, credential headers removed.

        Every request to a chat endpoint is recorded, also those answered with a
        fault or an error (so a retried request shows up twice).
        """
        with self._state.lock:
            return self._state.log.snapshot()

    def clear_recorded_requests(self) -> None:
        """Forget the recorded requests."""
        with self._state.lock:
            self._state.log.clear()

    def script(self, *replies: PolicyReply | str) -> None:
        """Queue replies that the next completion requests get, before the policy.

        Args:
            replies: a :class:`PolicyReply` (text and/or tool calls) or plain text each.
        """
        with self._state.lock:
            self._state.scripted.extend(
                PolicyReply(text=r) if isinstance(r, str) else r for r in replies
            )

    def inject_faults(self, *faults: Fault | str | Mapping[str, Any]) -> None:
        """Queue faults that the next provider requests get, one each.

        Args:
            faults: ``"429"``, ``"500"``, ``"slow"``/``"slow:SECONDS"``, ``"drop"`` or a
                :class:`~agent.simulator.faults.Fault`.

        Raises:
            ConfigError: a fault spec names no known fault.
        """
        parsed = [parse_fault(f) for f in faults]
        with self._state.lock:
            self._state.faults.extend(parsed)

    def set_latency(self, *, ttft: float = 0.0, tokens_per_second: float | None = None) -> None:
        """Replace the latency of the following replies.

        Args:
            ttft: seconds before the first token.
            tokens_per_second: generation speed; None answers at once.

        Raises:
            ConfigError: a negative ttft or a non-positive speed.
        """
        _check_latency(ttft, tokens_per_second)
        with self._state.lock:
            self._state.ttft, self._state.tokens_per_second = ttft, tokens_per_second

    # -- answering (called by the HTTP handler) ------------------------------

    def route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Decide the answer to one HTTP request.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: the request path, query string included.
            headers: the request headers.
            body: the raw body.

        Returns:
            The outcome for the HTTP layer to send.
        """
        bare = path.split("?", 1)[0].rstrip("/") or "/"
        provider = _COMPLETION_PATHS.get(bare)
        if method == "POST" and provider is not None:
            return answer_completion(self._state, provider, method, path, headers, body)
        if method == "POST" and bare == "/v1/messages/count_tokens":
            return answer_count_tokens(self._state, headers, body)
        return control_outcome(self, method, bare, body)


def serve(
    host: str,
    port: int,
    *,
    ttft: float = 0.0,
    tokens_per_second: float | None = None,
    context_window: int | None = None,
) -> None:
    """Run a provider simulator in the foreground until interrupted (Ctrl-C).

    Prints one line with the URL once listening.

    Args:
        host: interface to listen on.
        port: TCP port (0 picks a free one; the printed URL shows it).
        ttft: seconds before the first token of every reply.
        tokens_per_second: generation speed; None answers at once.
        context_window: most prompt tokens a request may have (None: no limit).
    """
    with ProviderSimulator(
        host, port, ttft=ttft, tokens_per_second=tokens_per_second, context_window=context_window
    ) as sim:
        print(
            f"provider simulator listening on {sim.url} "
            f"(openai base_url {sim.openai_base_url}, anthropic base_url {sim.anthropic_base_url})",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
