"""The deterministic reply policy shared by the offline provider and the simulator.

Both answer a conversation the same way, so a test reads the same whether the
agent runs embedded (offline provider) or against the provider simulator over
HTTP. The policy is a pure function of the neutral messages (see
docs/architecture.md) and the offered tool names:

- ``!sh CMD`` from the user, with ``terminal`` offered: call ``terminal`` with
  ``{"command": CMD}`` (a cluster notice before it, see :mod:`agent.turn_notice`,
  is read past as a model would);
- ``!tool NAME {json args}`` with ``NAME`` offered: call ``NAME`` with the args
  (arguments that are not a JSON object give a text reply saying so);
- a tool result last: ``"[NAME] "`` + the first 500 characters of the result;
- a context compression request (:mod:`agent.compression`): a deterministic
  summary of the user messages before it, within the requested budget;
- anything else: ``"echo: "`` + the user's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.compression import deterministic_summary, parse_summary_request
from agent.turn_notice import split_notice

__all__ = ["TOOL_RESULT_PREVIEW_CHARS", "PolicyReply", "content_text", "decide_reply"]

TOOL_RESULT_PREVIEW_CHARS = 500
"""How much of a tool result the policy quotes back."""

_SH_RE = re.compile(r"!sh\s+(?P<command>\S.*)", re.DOTALL)
_TOOL_RE = re.compile(r"!tool\s+(?P<name>\S+)(?:\s+(?P<args>.*))?", re.DOTALL)


@dataclass(frozen=True)
class PolicyReply:
    """What the model "says": text, tool calls, or both.

    Attributes:
        text: the assistant text, or None when the reply is only tool calls.
        tool_calls: ``(tool name, arguments)`` pairs, in call order.
    """

    text: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a part list.

    Args:
        content: a neutral message's ``content`` (normally ``str`` or ``None``); a
            list of ``{"type": "text", "text": ...}`` parts is joined, so wire
            converters may pass multi-part content through unchanged.

    Returns:
        The text, ``""`` for ``None``.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _tool_command(text: str, tool_names: Sequence[str]) -> PolicyReply | None:
    stripped = split_notice(text)[1].strip()
    sh = _SH_RE.fullmatch(stripped)
    if sh is not None and "terminal" in tool_names:
        return PolicyReply(tool_calls=(("terminal", {"command": sh.group("command").strip()}),))
    tool = _TOOL_RE.fullmatch(stripped)
    if tool is None or tool.group("name") not in tool_names:
        return None
    name = tool.group("name")
    raw_args = (tool.group("args") or "").strip()
    if not raw_args:
        return PolicyReply(tool_calls=((name, {}),))
    try:
        args = json.loads(raw_args)
    except json.JSONDecodeError as exc:
        return PolicyReply(
            text=f"!tool {name}: the arguments are not valid JSON ({exc.msg} at column "
            f'{exc.colno}); send a JSON object, e.g. !tool {name} {{"key": "value"}}'
        )
    if not isinstance(args, dict):
        return PolicyReply(
            text=f"!tool {name}: the arguments must be a JSON object, got {type(args).__name__}; "
            f'e.g. !tool {name} {{"key": "value"}}'
        )
    return PolicyReply(tool_calls=((name, args),))


def decide_reply(messages: list[dict[str, Any]], tool_names: Sequence[str]) -> PolicyReply:
    """Decide the model's reply to a conversation, deterministically.

    Args:
        messages: the conversation in the neutral format (user, assistant and
            tool messages; the system prompt is not a message).
        tool_names: the names of the tools offered with the request.

    Returns:
        The reply: a tool call for ``!sh``/``!tool`` commands, a quote of the
        last tool result, or an echo of the user's text.
    """
    if messages:
        last = messages[-1]
        role = last.get("role")
        if role == "tool":
            name = str(last.get("name") or "tool")
            result = content_text(last.get("content"))
            return PolicyReply(text=f"[{name}] {result[:TOOL_RESULT_PREVIEW_CHARS]}")
        if role == "user":
            budget = parse_summary_request(content_text(last.get("content")))
            if budget is not None:
                texts = [
                    content_text(m.get("content")) for m in messages if m.get("role") == "user"
                ]
                return PolicyReply(text=deterministic_summary(texts, budget))
            command = _tool_command(content_text(last.get("content")), tool_names)
            if command is not None:
                return command
    return PolicyReply(text="echo: " + _last_user_text(messages))
