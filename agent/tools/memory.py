"""The ``memory`` tool and ``memory_notes``: durable notes the system prompt carries.

Notes live in the task's tool state under the key ``"memory"``; the agent puts
:func:`memory_notes` into the system prompt it builds for the session.
"""

from __future__ import annotations

from typing import Any

from agent.tools.environment import ToolEnvironment
from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.state import ToolStateStore
from cluster.errors import ToolError

MEMORY_STATE_KEY = "memory"
MAX_NOTES = 100
MAX_NOTE_CHARS = 2000

MEMORY_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": ["add", "list", "remove"],
            "description": "add a note, list notes, remove a note by number.",
        },
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NOTE_CHARS,
            "description": "For add: the note to remember.",
        },
        "id": {"type": "integer", "minimum": 1, "description": "For remove: the note's number."},
    },
    "required": ["action"],
    "additionalProperties": False,
}


def load_memory(store: ToolStateStore, task_id: str) -> dict[str, Any]:
    """Return the task's notes ``{"next_id": int, "notes": [{"id": int, "text": str}]}``."""
    raw = store.load(task_id, MEMORY_STATE_KEY)
    if not isinstance(raw, dict) or not isinstance(raw.get("notes"), list):
        return {"next_id": 1, "notes": []}
    return raw


def memory_notes(env: ToolEnvironment, task_id: str) -> list[str]:
    """Return the task's memory notes, oldest first (for the system prompt)."""
    return [
        str(note["text"])
        for note in load_memory(env.state, task_id)["notes"]
        if isinstance(note, dict) and "text" in note
    ]


def _render(memory: dict[str, Any]) -> str:
    notes = memory["notes"]
    if not notes:
        return "no memory notes"
    return "\n".join(f"#{note['id']} {note['text']}" for note in notes)


def _apply(memory: dict[str, Any], args: dict[str, Any]) -> str:
    notes: list[dict[str, Any]] = memory["notes"]
    if args["action"] == "add":
        if "text" not in args:
            raise ToolError("action 'add' needs 'text'")
        if len(notes) >= MAX_NOTES:
            raise ToolError(f"memory is full ({MAX_NOTES} notes); remove one first")
        note_id = int(memory.get("next_id", 1))
        notes.append({"id": note_id, "text": args["text"]})
        memory["next_id"] = note_id + 1
        return f"remembered as note #{note_id}"
    if "id" not in args:
        raise ToolError("action 'remove' needs 'id' (see action 'list')")
    kept = [note for note in notes if note.get("id") != args["id"]]
    if len(kept) == len(notes):
        known = ", ".join(f"#{note['id']}" for note in notes) or "none"
        raise ToolError(f"no memory note #{args['id']} (notes: {known})")
    memory["notes"] = kept
    return f"removed note #{args['id']}"


def memory_spec() -> ToolSpec:
    """Build the ``memory`` tool (toolset ``memory``)."""

    def handle(args: dict[str, Any], ctx: ToolContext) -> str:
        memory = load_memory(ctx.env.state, ctx.task_id)
        if args["action"] == "list":
            return _render(memory)
        message = _apply(memory, args)
        ctx.env.state.save(ctx.task_id, MEMORY_STATE_KEY, memory)
        return f"{message}\n{_render(memory)}"

    return ToolSpec(
        name="memory",
        description=(
            "Durable notes for this session that stay in your system prompt: 'add' a note "
            "worth remembering (preferences, facts, decisions), 'list' them, 'remove' one."
        ),
        parameters=MEMORY_PARAMETERS,
        toolset="memory",
        handler=handle,
    )


__all__ = ["MEMORY_STATE_KEY", "load_memory", "memory_notes", "memory_spec"]
