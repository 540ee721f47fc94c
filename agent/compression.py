"""Context compression that keeps the prompt cache: the pure policy.

A long session's prompt grows until the provider refuses it. When the prompt
of the next call passes ``threshold * context_length`` tokens, the agent asks
the model to summarise the middle of the conversation (everything before the
last ``protect_last_n`` turns, an earlier summary included) and continues on
``[summary] + last turns``. The frozen system prompt and tool schemas are not
touched, so the provider's cache keeps its longest stable prefix.

How a compressed history is stored (append-only, so the full conversation
stays readable): the summary is a ``user`` message carrying a ``compaction``
field, ``{"kept": k, "summarised": m}``, committed as the first message of the
turn that compressed. It replaces every stored message before it except the
last ``k`` non-summary ones. :func:`effective_history` turns the stored list
into exactly the messages the agent sends, on any worker: an agent rebuilt
after a move sends the same bytes the old one would have, so the provider's
cache keeps hitting.

When to compress is a pure function of the committed history, the frozen
prompt and the new message (:func:`prompt_tokens`): a character estimate, or,
when the provider reported it, the prompt size of the last call (stored on
its assistant message as ``prompt_tokens``) plus an estimate of what came
after. No clock, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cluster.config_schema import (
    DEFAULT_COMPRESSION_TARGET,
    DEFAULT_COMPRESSION_THRESHOLD,
    DEFAULT_PROTECT_LAST_N,
)
from cluster.errors import ConfigError

__all__ = [
    "COMPACTION_FIELD",
    "MIN_SUMMARY_TOKENS",
    "PROMPT_TOKENS_FIELD",
    "SUMMARY_REQUEST_MARK",
    "CompressionPlan",
    "CompressionSettings",
    "effective_history",
    "estimate_tokens",
    "is_summary",
    "parse_summary_request",
    "plan_compression",
    "prompt_tokens",
    "deterministic_summary",
    "summary_message",
    "summary_request",
]

Message = dict[str, Any]

COMPACTION_FIELD: Final = "compaction"
"""The field that marks a stored message as a summary (its value: kept, summarised)."""

PROMPT_TOKENS_FIELD: Final = "prompt_tokens"
"""Set on an assistant message: the prompt tokens the provider reported for its call."""

MIN_SUMMARY_TOKENS: Final = 64
"""A summary is never asked to be shorter than this."""

SUMMARY_REQUEST_MARK: Final = "[context compression request]"
"""Starts the user message that asks for a summary (the offline model and the simulator
recognise it and answer with a deterministic summary)."""

SUMMARY_HEADER: Final = "[Summary of the earlier conversation, written when it was compressed]"

_BUDGET_RE = re.compile(r"at most (\d+) tokens")
_MESSAGE_OVERHEAD = 4  # role and framing tokens per message, as providers count them
_SUMMARY_REQUEST_TOKENS = 80  # the instruction of summary_request()
_ESTIMATE_MARGIN = 1.5  # an estimate without a provider count may be short by a third


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CompressionSettings:
    """The compression part of the cluster config.

    Attributes:
        context_length: ``model.context_length``: the model's context window, tokens.
        threshold: ``compression.threshold``: compress when the next prompt passes
            this share of ``context_length``, in (0, 1].
        target_ratio: ``compression.target_ratio``: the compressed prompt aims at this
            share of ``context_length``, in (0, threshold).
        protect_last_n: ``compression.protect_last_n``: the last turns kept verbatim.
    """

    context_length: int
    threshold: float = DEFAULT_COMPRESSION_THRESHOLD
    target_ratio: float = DEFAULT_COMPRESSION_TARGET
    protect_last_n: int = DEFAULT_PROTECT_LAST_N

    def __post_init__(self) -> None:
        if not _is_whole(self.context_length) or self.context_length < 1:
            raise ConfigError(
                f"model.context_length must be a whole number >= 1, got {self.context_length!r}"
            )
        if not _is_number(self.threshold) or not 0 < self.threshold <= 1:
            raise ConfigError(
                f"compression.threshold must be a number in (0, 1], got {self.threshold!r}"
            )
        if not _is_number(self.target_ratio) or not 0 < self.target_ratio < self.threshold:
            raise ConfigError(
                "compression.target_ratio must be a number above 0 and below "
                f"compression.threshold ({self.threshold:g}), got {self.target_ratio!r}: "
                "a compressed prompt above the threshold would be compressed again every turn"
            )
        if not _is_whole(self.protect_last_n) or self.protect_last_n < 0:
            raise ConfigError(
                f"compression.protect_last_n must be a whole number >= 0, "
                f"got {self.protect_last_n!r}"
            )

    @property
    def trigger_tokens(self) -> int:
        """Prompt size (tokens) above which the next call compresses first."""
        return int(self.threshold * self.context_length)

    @property
    def target_tokens(self) -> int:
        """Prompt size (tokens) a compression aims at."""
        return int(self.target_ratio * self.context_length)


@dataclass(frozen=True)
class CompressionPlan:
    """What to compress: ``summarise`` becomes one summary; ``keep`` stays verbatim.

    Attributes:
        summarise: The leading messages of the history to replace (an earlier
            summary included).
        keep: The messages after them (the last ``protect_last_n`` turns).
        budget: Most tokens the summary may take.
        dropped: The oldest messages left out of the summary call (their prompt
            would not fit in the window): replaced too, summarised by nothing.
    """

    summarise: list[Message]
    keep: list[Message]
    budget: int
    dropped: int = 0


def is_summary(message: Mapping[str, Any]) -> bool:
    """Whether a stored message is a compression summary."""
    return isinstance(message.get(COMPACTION_FIELD), Mapping)


def effective_history(stored: Sequence[Mapping[str, Any]]) -> list[Message]:
    """The messages an agent sends, from a session's stored (append-only) history.

    The last summary replaces everything stored before it except the last
    ``kept`` non-summary messages; messages after it follow verbatim.
    """
    last = next((i for i in range(len(stored) - 1, -1, -1) if is_summary(stored[i])), None)
    if last is None:
        return [dict(m) for m in stored]
    summary = stored[last]
    kept = int(summary[COMPACTION_FIELD].get("kept", 0))
    before = [dict(m) for m in stored[:last] if not is_summary(m)]
    after = [dict(m) for m in stored[last + 1 :]]
    return [dict(summary), *(before[-kept:] if kept > 0 else []), *after]


def _message_text(message: Mapping[str, Any]) -> str:
    text = str(message.get("content") or "")
    calls = message.get("tool_calls")
    if calls:
        text += json.dumps(calls, sort_keys=True, default=str)
    return text


def estimate_tokens(
    system: str, tools: Sequence[Mapping[str, Any]], messages: Sequence[Mapping[str, Any]]
) -> int:
    """A provider-independent estimate of a prompt's tokens (about four characters each)."""
    # JSON schemas cut into more tokens than prose: a third of their characters.
    schemas = sum(len(json.dumps(t, sort_keys=True, default=str)) for t in tools)
    return len(system) // 4 + schemas // 3 + _messages_tokens(messages)


def _messages_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(_message_text(m)) // 4 + _MESSAGE_OVERHEAD for m in messages)


def prompt_tokens(
    system: str,
    tools: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    message: Mapping[str, Any],
) -> int:
    """The size of the next prompt (``history`` then ``message``), in tokens.

    The larger of the estimate and, when the provider reported the prompt of a
    call whose reply is in ``history`` after the last compression, that figure
    plus an estimate of the messages since.
    """
    return _measure(system, tools, history, message)[0]


def _measure(
    system: str,
    tools: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    message: Mapping[str, Any],
) -> tuple[int, bool]:
    """:func:`prompt_tokens`, and whether a provider-reported count backs it."""
    estimate = estimate_tokens(system, tools, [*history, message])
    protected = 0
    if history and is_summary(history[0]):
        protected = int(history[0][COMPACTION_FIELD].get("kept", 0))
    for index in range(len(history) - 1, protected, -1):
        reported = history[index].get(PROMPT_TOKENS_FIELD)
        if history[index].get("role") == "assistant" and isinstance(reported, int):
            since = reported + _messages_tokens([*history[index:], message])
            return max(estimate, since), True
    return estimate, False


def _turn_starts(history: Sequence[Mapping[str, Any]]) -> list[int]:
    return [i for i, m in enumerate(history) if m.get("role") == "user" and not is_summary(m)]


def plan_compression(
    settings: CompressionSettings,
    *,
    system: str,
    tools: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    message: Mapping[str, Any],
) -> CompressionPlan | None:
    """Decide whether the next call compresses first, and what.

    Args:
        settings: The session's compression settings.
        system: The frozen system prompt.
        tools: The frozen tool schemas.
        history: What the agent would send before ``message`` (:func:`effective_history`).
        message: The new user message.

    Returns:
        ``None`` when the prompt stays under the threshold or there is nothing
        before the protected turns to summarise; else the plan.
    """
    measured, reported = _measure(system, tools, history, message)
    if measured <= settings.trigger_tokens:
        return None
    starts = _turn_starts(history)
    if settings.protect_last_n == 0:
        cut = len(history)
    elif len(starts) > settings.protect_last_n:
        cut = starts[-settings.protect_last_n]
    else:
        return None
    summarise = [dict(m) for m in history[:cut]]
    if not summarise or (len(summarise) == 1 and is_summary(summarise[0])):
        return None
    keep = [dict(m) for m in history[cut:]]
    # The summary call sends the prompt up to the cut, and its reply must fit in the
    # window too. An estimate alone may be short by a third: room is kept for that.
    margin = 1.0 if reported else _ESTIMATE_MARGIN
    request = measured - _messages_tokens([*keep, message]) + _SUMMARY_REQUEST_TOKENS
    # Past the window (compression switched on for a session already too long), the
    # oldest turns are left out of the summary, whole turns so no tool result is orphaned.
    first = 1 if is_summary(summarise[0]) else 0
    dropped = 0
    while request * margin + MIN_SUMMARY_TOKENS > settings.context_length:
        later = [i for i in _turn_starts(summarise) if i > first]
        if not later:
            break
        gone, summarise = summarise[first : later[0]], summarise[:first] + summarise[later[0] :]
        request -= _messages_tokens(gone)
        dropped += len(gone)
    kept_tokens = estimate_tokens(system, tools, [*keep, message])
    room = int(settings.context_length - request * margin)
    budget = max(MIN_SUMMARY_TOKENS, min(settings.target_tokens - kept_tokens, room))
    return CompressionPlan(summarise=summarise, keep=keep, budget=budget, dropped=dropped)


def summary_request(plan: CompressionPlan) -> Message:
    """The user message that asks the model for the summary (sent after ``plan.summarise``)."""
    return {
        "role": "user",
        "content": (
            f"{SUMMARY_REQUEST_MARK} The conversation above is being compressed to fit the "
            f"context window. Summarise it in at most {plan.budget} tokens: the facts, "
            "decisions, names, numbers, files and open tasks a continuation needs. Reply with "
            "the summary only, no tool calls."
        ),
    }


def parse_summary_request(text: str) -> int | None:
    """The token budget of a summary request, or ``None`` when ``text`` is not one."""
    at = text.find(SUMMARY_REQUEST_MARK)
    if at < 0:
        return None
    match = _BUDGET_RE.search(text, at)
    return int(match.group(1)) if match else MIN_SUMMARY_TOKENS


def deterministic_summary(user_texts: Sequence[str], budget: int) -> str:
    """The summary the offline model and the simulator write: one line per user message.

    An earlier summary's lines are carried over; each other user message gives
    ``- user: <its first 12 words>``. The newest lines that fit in ``budget``
    tokens (about three characters each) are kept.

    Args:
        user_texts: The text of each user message of the summarised conversation.
        budget: Most tokens the summary may take.
    """
    items: list[str] = []
    for text in user_texts:
        if SUMMARY_REQUEST_MARK in text:
            text = text[: text.find(SUMMARY_REQUEST_MARK)]
        if SUMMARY_HEADER in text:
            before, _, after = text.partition(SUMMARY_HEADER)
            lines = after.splitlines()
            items += [line for line in lines if line.startswith("- ")]
            text = before
        words = text.split()
        if words:
            items.append("- user: " + " ".join(words[:12]))
    kept: list[str] = []
    used = 0
    for item in reversed(items):
        cost = len(item) // 3 + 1
        if used + cost > budget:
            break
        kept.append(item)
        used += cost
    return "\n".join(reversed(kept)) or "- (nothing to keep)"


def summary_message(plan: CompressionPlan, summary: str) -> Message:
    """The stored summary: replaces ``plan.summarise``, keeps ``plan.keep`` verbatim."""
    return {
        "role": "user",
        "content": f"{SUMMARY_HEADER}\n{summary.strip()}",
        COMPACTION_FIELD: {
            "kept": len(plan.keep),
            "summarised": len(plan.summarise) + plan.dropped,
        },
    }
