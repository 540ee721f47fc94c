"""The offline provider: deterministic replies, no network, no api key.

It answers with the same policy as the provider simulator
(:func:`agent.providers.reply_policy.decide_reply`), so a conversation reads the same
embedded or against the simulator: ``!sh ls`` calls the terminal tool, a tool
result is summarised, anything else is echoed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from agent.messages import Usage
from agent.providers.base import DeltaCallback, ModelRequest, ModelResponse
from agent.providers.reply_policy import decide_reply


class OfflineClient:
    """Stands in for an SDK client so the cache's soft-release contract holds offline."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class OfflineProvider:
    """Deterministic provider for the embedded default and the tests."""

    name = "offline"

    def __init__(self) -> None:
        self.client: Any = OfflineClient()
        self._ids = itertools.count(1)

    def complete(
        self,
        request: ModelRequest,
        *,
        on_delta: DeltaCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ModelResponse:
        tool_names = [schema["name"] for schema in request.tools]
        reply = decide_reply(list(request.messages), tool_names)
        prompt_chars = len(request.system) + sum(
            len(str(m.get("content") or "")) for m in request.messages
        )
        usage = Usage(input_tokens=prompt_chars // 4, api_calls=1)
        if reply.tool_calls:
            calls = [
                {"id": f"call_{next(self._ids)}", "name": name, "arguments": dict(arguments)}
                for name, arguments in reply.tool_calls
            ]
            usage.output_tokens = sum(_approx_tokens(str(c["arguments"])) for c in calls)
            return ModelResponse(
                text=reply.text, tool_calls=calls, usage=usage, stop_reason="tool_calls"
            )
        text = reply.text or ""
        if on_delta is not None:
            for word in text.split(" "):
                if should_stop():
                    break
                on_delta(word + " ")
        usage.output_tokens = _approx_tokens(text)
        return ModelResponse(text=text, usage=usage, stop_reason="stop")

    def abort(self) -> None:
        """Nothing is ever stuck offline."""

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
