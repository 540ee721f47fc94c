"""Answering one completion request: fault, auth, parse, reply, cache, price, record.

The steps, in the order a provider request meets them:

1. the request is recorded (credential headers dropped);
2. the next queued fault, if any, applies (``drop``, ``429``, ``500``; a
   ``slow`` fault delays the normal answer);
3. the api key is checked (``Authorization: Bearer`` for OpenAI, ``x-api-key``
   or ``Authorization: Bearer`` for Anthropic, whose SDK sends the latter; a
   key starting with ``"bad"`` gets 401);
4. the body is parsed and validated by the provider's wire module (400 with
   the reason otherwise); a prompt longer than the simulated context window
   (if one is set) gets 400 too;
5. the reply is the next scripted one, else the deterministic policy's;
6. the prompt goes through the provider's prompt cache, the call is priced and
   counted in the stats.

Everything shared between request threads lives in :class:`SimulatorState`
and is only touched under its lock.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.providers.pricing import call_cost
from agent.providers.reply_policy import PolicyReply, decide_reply
from agent.simulator import anthropic_wire, openai_wire
from agent.simulator._http import Outcome
from agent.simulator.exchange import ParsedRequest, Reply, new_id
from agent.simulator.faults import Fault
from agent.simulator.prompt_cache import (
    AnthropicCacheUsage,
    OpenAICacheUsage,
    PromptCache,
    cache_partition,
)
from agent.simulator.recording import RequestLog
from agent.simulator.stats import CallUsage, UsageStats
from cluster.errors import ProviderBadRequest

__all__ = ["SimulatorState", "answer_completion", "answer_count_tokens"]


@dataclass
class SimulatorState:
    """The simulator's mutable state, guarded by ``lock``.

    Attributes:
        cache: the prompt caches of both providers.
        log: the recorded requests.
        stats: usage totals.
        scripted: replies the next requests get before the policy.
        faults: faults the next requests get.
        ttft: seconds before the first token.
        tokens_per_second: generation speed, None for instant.
        context_window: most prompt tokens a request may have (None: no limit); a
            longer prompt gets 400, as a model's context window refuses it.
        lock: guards every attribute above.
    """

    cache: PromptCache
    log: RequestLog
    stats: UsageStats = field(default_factory=UsageStats)
    scripted: deque[PolicyReply] = field(default_factory=deque)
    faults: deque[Fault] = field(default_factory=deque)
    ttft: float = 0.0
    tokens_per_second: float | None = None
    context_window: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _api_key(provider: str, headers: Mapping[str, str]) -> str | None:
    lowered = {name.lower(): value for name, value in headers.items()}
    if provider == "anthropic" and lowered.get("x-api-key"):
        return lowered["x-api-key"]
    auth = lowered.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return None


def _error(state: SimulatorState, provider: str, status: int, message: str) -> Outcome:
    with state.lock:
        state.stats.record_error(provider)
    render = openai_wire.error_body if provider == "openai" else anthropic_wire.error_body
    return Outcome(status=status, body=render(status, message))


def _fault_outcome(state: SimulatorState, provider: str, fault: Fault) -> Outcome | None:
    if fault.kind == "drop":
        with state.lock:
            state.stats.record_error(provider)
        return Outcome(drop=True)
    if fault.kind == "429":
        outcome = _error(
            state, provider, 429, "Rate limit reached (simulated); retry after the delay given."
        )
        outcome.headers = {
            "retry-after": str(max(1, round(fault.retry_after))),
            "retry-after-ms": str(int(fault.retry_after * 1000)),
        }
        return outcome
    if fault.kind == "500":
        return _error(
            state,
            provider,
            500,
            "The server had an error while processing your request (simulated).",
        )
    return None


def _authorize(state: SimulatorState, provider: str, headers: Mapping[str, str]) -> str | Outcome:
    key = _api_key(provider, headers)
    if key is None:
        where = (
            "an x-api-key header"
            if provider == "anthropic"
            else "an 'Authorization: Bearer' header"
        )
        return _error(state, provider, 401, f"No API key provided: send it in {where}.")
    if key.startswith("bad"):
        message = "Incorrect API key provided (simulated: keys starting with 'bad' are rejected)."
        return _error(state, provider, 401, message)
    return key


def _parse(
    state: SimulatorState, provider: str, body: bytes, *, count_only: bool = False
) -> ParsedRequest | Outcome:
    parse = openai_wire.parse_request if provider == "openai" else anthropic_wire.parse_request
    try:
        decoded = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(state, provider, 400, f"The request body is not valid JSON ({exc}).")
    if count_only and isinstance(decoded, dict):
        decoded.setdefault("max_tokens", 1)  # count_tokens takes no max_tokens
    try:
        return parse(decoded)
    except ProviderBadRequest as exc:
        return _error(state, provider, 400, str(exc))


def answer_completion(
    state: SimulatorState,
    provider: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Outcome:
    """Answer a chat request (``/v1/chat/completions`` or ``/v1/messages``).

    Args:
        state: the simulator's state.
        provider: ``"openai"`` or ``"anthropic"``.
        method: the HTTP method (recorded).
        path: the request path (recorded).
        headers: the request headers.
        body: the raw request body.

    Returns:
        The outcome: a reply (JSON or events, with latency), an error, or a drop.
    """
    with state.lock:
        state.log.add(provider, method, path, headers, body)
        fault = state.faults.popleft() if state.faults else None
    if fault is not None:
        faulted = _fault_outcome(state, provider, fault)
        if faulted is not None:
            return faulted
    key = _authorize(state, provider, headers)
    if isinstance(key, Outcome):
        return key
    request = _parse(state, provider, body)
    if isinstance(request, Outcome):
        return request
    window = state.context_window
    if window is not None and (tokens := request.prompt().total_tokens) > window:
        return _error(
            state,
            provider,
            400,
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {tokens} tokens (simulated context window). Please reduce the length "
            "of the messages.",
        )
    outcome = _reply(state, request, cache_partition(key, request.model))
    if fault is not None:
        outcome.delay = fault.seconds
    return outcome


def _reply(state: SimulatorState, request: ParsedRequest, partition: str) -> Outcome:
    prompt = request.prompt()
    with state.lock:
        scripted = state.scripted.popleft() if state.scripted else None
        outcome = Outcome(ttft=state.ttft, tokens_per_second=state.tokens_per_second)
        if request.provider == "openai":
            openai_usage = state.cache.openai(partition, prompt)
        else:
            anthropic_usage = state.cache.anthropic(partition, prompt)
    policy = (
        scripted if scripted is not None else decide_reply(request.messages, request.tool_names)
    )
    if request.provider == "openai":
        reply = _render_openai(request, policy, openai_usage, outcome)
        call = (openai_usage.uncached_tokens, openai_usage.cached_tokens, 0)
    else:
        reply = _render_anthropic(request, policy, anthropic_usage, outcome)
        call = (
            anthropic_usage.input_tokens,
            anthropic_usage.cache_read_input_tokens,
            anthropic_usage.cache_creation_input_tokens,
        )
    outcome.output_tokens = reply.output_tokens
    uncached, read, written = call
    cost = call_cost(
        request.provider,
        request.model,
        input_tokens=uncached,
        cache_read_tokens=read,
        cache_write_tokens=written,
        output_tokens=reply.output_tokens,
    )
    usage = CallUsage(
        request.provider, request.model, uncached, read, written, reply.output_tokens, cost
    )
    with state.lock:
        state.stats.record(usage)
    return outcome


def _render_openai(
    request: ParsedRequest, policy: PolicyReply, usage: OpenAICacheUsage, outcome: Outcome
) -> Reply:
    reply = Reply.from_policy(policy, openai_wire.TOOL_CALL_ID_PREFIX)
    outcome.headers["x-request-id"] = new_id("req_")
    if request.stream:
        chunks = openai_wire.completion_chunks(
            reply, request.model, usage, include_usage=request.include_usage
        )
        outcome.events = list(chunks)
    else:
        outcome.body = openai_wire.completion_body(reply, request.model, usage)
    return reply


def _render_anthropic(
    request: ParsedRequest, policy: PolicyReply, usage: AnthropicCacheUsage, outcome: Outcome
) -> Reply:
    reply = Reply.from_policy(policy, anthropic_wire.TOOL_CALL_ID_PREFIX)
    outcome.headers["request-id"] = new_id("req_")
    if request.stream:
        outcome.events = list(anthropic_wire.message_events(reply, request.model, usage))
    else:
        outcome.body = anthropic_wire.message_body(reply, request.model, usage)
    return reply


def answer_count_tokens(state: SimulatorState, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Answer Anthropic ``POST /v1/messages/count_tokens`` (not priced, not counted)."""
    key = _authorize(state, "anthropic", headers)
    if isinstance(key, Outcome):
        return key
    request = _parse(state, "anthropic", body, count_only=True)
    if isinstance(request, Outcome):
        return request
    return Outcome(body={"input_tokens": request.prompt().total_tokens})
