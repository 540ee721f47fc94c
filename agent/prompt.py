"""Building and freezing the system prompt.

The system prompt and the tool schemas are the prefix of every request. The
provider's prompt cache only hits while that prefix stays byte-identical, so
the first turn freezes both in a :class:`FrozenPrompt`; later turns, and an
agent rebuilt on another worker from the persisted copy, send exactly the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_IDENTITY = """\
You are a helpful assistant running inside a chat gateway. You talk to one \
person (or one group) per conversation, through a messaging platform, and you \
keep the conversation's context between messages.

How to work:
- Answer the question that was asked, directly. Prefer short answers; expand \
when the person asks for detail.
- When a task needs the machine, use the tools you were given rather than \
guessing. The terminal tool runs shell commands in this conversation's own \
sandbox directory; its working directory and exported variables persist \
between calls. The process tool starts long-running commands in the \
background and lets you poll their output later. The todo tool keeps a task \
list for multi-step work. The memory tool keeps short notes that persist \
across conversations of this session.
- Before a destructive command (deleting files, killing processes), say what \
it will do. Never print secrets such as API keys or tokens.
- If a tool fails, read its error, fix the call and try again, or explain \
what went wrong. Do not invent tool output.
- Keep formatting simple: the platform may not render Markdown tables.
"""

PLATFORM_HINTS: Mapping[str, str] = {
    "cli": "You are talking in a terminal. Plain text renders best.",
    "telegram": "You are talking on Telegram. Keep messages short; basic Markdown renders.",
    "discord": (
        "You are talking on Discord. Markdown renders; messages over 2000 characters are split."
    ),
    "slack": "You are talking on Slack. Use Slack mrkdwn: *bold*, _italic_, `code`.",
    "http": "You are answering an HTTP API client. Plain text is safest.",
}

PROMPT_TEMPLATE_DIGEST = hashlib.sha256(
    json.dumps([DEFAULT_IDENTITY, dict(PLATFORM_HINTS)], sort_keys=True).encode()
).hexdigest()[:16]
"""A digest of the built-in prompt text (identity, platform hints): part of what builds a prompt."""

CONTEXT_FILE_NAMES = ("AGENTS.md", "CONTEXT.md")
MAX_CONTEXT_FILE_CHARS = 20_000


@dataclass(frozen=True)
class FrozenPrompt:
    """The frozen prefix of a session: system prompt and tool schemas, in order.

    ``as_dict``/``from_dict`` round-trip through msgpack (the session store) so
    a rebuilt agent sends the identical prefix.
    """

    system_prompt: str
    tool_schemas: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for persisting with the session."""
        return {"system_prompt": self.system_prompt, "tool_schemas": list(self.tool_schemas)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrozenPrompt:
        """Rebuild from :meth:`as_dict` output."""
        return cls(
            system_prompt=str(data["system_prompt"]),
            tool_schemas=tuple(dict(schema) for schema in data["tool_schemas"]),
        )

    def fingerprint(self) -> str:
        """A short digest of the exact prefix, for logs and tests."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def read_context_files(directory: Path) -> list[tuple[str, str]]:
    """The AGENTS.md-style files of ``directory``, as (name, text), size-capped."""
    found = []
    for name in CONTEXT_FILE_NAMES:
        path = directory / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if len(text) > MAX_CONTEXT_FILE_CHARS:
                text = text[:MAX_CONTEXT_FILE_CHARS] + "\n[... truncated]"
            found.append((name, text))
    return found


def read_skills(directory: Path | None) -> list[tuple[str, str]]:
    """Skills as (name, one-line description) from ``directory/*/SKILL.md``, sorted."""
    if directory is None or not directory.is_dir():
        return []
    skills = []
    for skill_file in sorted(directory.glob("*/SKILL.md")):
        lines = [ln.strip() for ln in skill_file.read_text(encoding="utf-8").splitlines()]
        description = next((ln.lstrip("# ") for ln in lines if ln), "")
        skills.append((skill_file.parent.name, description))
    return skills


def build_system_prompt(
    *,
    identity: str = DEFAULT_IDENTITY,
    platform: str = "cli",
    memory_notes: Sequence[str] = (),
    skills: Sequence[tuple[str, str]] = (),
    context_files: Sequence[tuple[str, str]] = (),
    ephemeral_prompt: str | None = None,
) -> str:
    """Assemble the system prompt from its parts, in a fixed order.

    The order puts what changes least first (identity, platform) so that even a
    rebuilt prompt shares the longest possible prefix with the old one.
    """
    parts = [identity.rstrip()]
    hint = PLATFORM_HINTS.get(platform)
    if hint:
        parts.append(f"## Platform\n{hint}")
    if skills:
        listing = "\n".join(f"- {name}: {description}" for name, description in skills)
        parts.append(f"## Skills\n{listing}")
    if context_files:
        for name, text in context_files:
            parts.append(f"## Context file {name}\n{text.rstrip()}")
    if memory_notes:
        notes = "\n".join(f"- {note}" for note in memory_notes)
        parts.append(f"## Memory notes\n{notes}")
    if ephemeral_prompt:
        parts.append(ephemeral_prompt.rstrip())
    return "\n\n".join(parts) + "\n"
