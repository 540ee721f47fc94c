"""The simulator's own HTTP endpoints, beside the provider APIs.

They expose the Python test controls to tests that run the simulator as a
separate process (``agent-cluster simulate-llm``):

=========================  =====================================================
``GET /health``            ``{"ok": true}``
``GET /stats``             usage totals overall and per provider, cost, hit share
``POST /stats/reset``      zero the totals
``GET /requests``          the recorded requests (credential headers removed)
``POST /faults``           ``{"faults": ["429", "drop", "slow:2", ...]}``
``POST /script``           ``{"replies": [{"text": ..., "tool_calls": [{"name", "arguments"}]}]}``
``POST /latency``          ``{"ttft": 0.2, "tokens_per_second": 50}``
``POST /cache/clear``      forget every prompt-cache entry
=========================  =====================================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agent.providers.reply_policy import PolicyReply
from agent.simulator._http import Outcome
from cluster.errors import ConfigError

if TYPE_CHECKING:
    from agent.simulator.server import ProviderSimulator

__all__ = ["control_outcome"]


def _error(status: int, message: str) -> Outcome:
    kind = "not_found" if status == 404 else "invalid_request_error"
    return Outcome(status=status, body={"error": {"message": message, "type": kind}})


def _scripted_reply(item: Any) -> PolicyReply:
    if isinstance(item, str):
        return PolicyReply(text=item)
    if not isinstance(item, dict):
        raise ConfigError(f"a scripted reply is a string or {{'text', 'tool_calls'}}, got {item!r}")
    calls = []
    for call in item.get("tool_calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ConfigError(
                f"a scripted tool call is {{'name': str, 'arguments': dict}}, got {call!r}"
            )
        arguments = call.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise ConfigError(f"scripted tool call {call['name']!r}: arguments must be an object")
        calls.append((call["name"], arguments))
    text = item.get("text")
    return PolicyReply(text=None if text is None else str(text), tool_calls=tuple(calls))


def _post(sim: ProviderSimulator, path: str, payload: dict[str, Any]) -> Outcome | None:
    if path == "/stats/reset":
        sim.reset_stats()
        return Outcome(body={"ok": True})
    if path == "/cache/clear":
        sim.clear_cache()
        return Outcome(body={"ok": True})
    if path == "/faults":
        faults = payload.get("faults")
        if not isinstance(faults, list):
            raise ConfigError(
                'POST /faults takes {"faults": ["429", "500", "slow:SECONDS", "drop", ...]}'
            )
        sim.inject_faults(*faults)
        return Outcome(body={"queued": len(faults)})
    if path == "/script":
        replies = payload.get("replies")
        if not isinstance(replies, list):
            raise ConfigError(
                'POST /script takes {"replies": [{"text": ..., "tool_calls": [...]}, ...]}'
            )
        sim.script(*[_scripted_reply(item) for item in replies])
        return Outcome(body={"queued": len(replies)})
    if path == "/latency":
        ttft = payload.get("ttft", 0.0)
        tps = payload.get("tokens_per_second")
        if not isinstance(ttft, int | float) or not (tps is None or isinstance(tps, int | float)):
            raise ConfigError(
                'POST /latency takes {"ttft": seconds, "tokens_per_second": number or null}'
            )
        sim.set_latency(ttft=float(ttft), tokens_per_second=None if tps is None else float(tps))
        return Outcome(body={"ok": True})
    return None


def control_outcome(sim: ProviderSimulator, method: str, path: str, body: bytes) -> Outcome:
    """Answer a request to one of the simulator's own endpoints.

    Args:
        sim: the simulator to control.
        method: ``"GET"`` or ``"POST"``.
        path: the request path without query string.
        body: the raw request body (JSON for the POST endpoints).

    Returns:
        The outcome: JSON, a 400 for a bad control request, 404 for an unknown path.
    """
    if method == "GET" and path == "/health":
        return Outcome(body={"ok": True})
    if method == "GET" and path == "/stats":
        return Outcome(body=sim.stats())
    if method == "GET" and path == "/requests":
        return Outcome(body={"requests": [r.as_dict() for r in sim.recorded_requests()]})
    if method == "POST":
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ConfigError(f"POST {path} takes a JSON object")
            outcome = _post(sim, path, payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"POST {path}: the body is not valid JSON ({exc})")
        except ConfigError as exc:
            return _error(400, str(exc))
        if outcome is not None:
            return outcome
    return _error(
        404,
        f"no route for {method} {path}: the simulator serves POST /v1/chat/completions "
        "(openai base_url = root + '/v1'), POST /v1/messages (anthropic base_url = root), "
        "GET /stats, POST /stats/reset, GET /requests, POST /faults, POST /script, POST /latency",
    )
