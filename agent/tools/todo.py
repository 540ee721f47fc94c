"""The ``todo`` tool: a per-session task list the model keeps for itself.

Items live in the task's tool state under the key ``"todo"``, so the list
survives agent rebuilds and moves between workers.
"""

from __future__ import annotations

from typing import Any

from agent.tools.registry import ToolContext, ToolSpec
from agent.tools.state import ToolStateStore
from cluster.errors import ToolError

TODO_STATE_KEY = "todo"
TODO_STATUSES = ("pending", "in_progress", "done")
MAX_ITEMS = 100
MAX_TEXT = 1000

TODO_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": ["add", "update", "list", "clear"],
            "description": "add an item, update one (status and/or text), list all, clear all.",
        },
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT,
            "description": "For add (required) and update: the item's text.",
        },
        "id": {"type": "integer", "minimum": 1, "description": "For update: the item's number."},
        "status": {
            "type": "string",
            "enum": list(TODO_STATUSES),
            "description": "For add and update: pending (default), in_progress or done.",
        },
    },
    "required": ["action"],
    "additionalProperties": False,
}


def load_todos(store: ToolStateStore, task_id: str) -> dict[str, Any]:
    """Return the task's todo list ``{"next_id": int, "items": [{"id", "text", "status"}]}``."""
    raw = store.load(task_id, TODO_STATE_KEY)
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        return {"next_id": 1, "items": []}
    return raw


def _render(todos: dict[str, Any]) -> str:
    items = todos["items"]
    if not items:
        return "the todo list is empty"
    done = sum(1 for item in items if item.get("status") == "done")
    lines = [f"todo ({done}/{len(items)} done):"]
    lines += [f"#{item['id']} [{item['status']}] {item['text']}" for item in items]
    return "\n".join(lines)


def _apply(todos: dict[str, Any], args: dict[str, Any]) -> None:
    action = args["action"]
    items: list[dict[str, Any]] = todos["items"]
    if action == "add":
        if "text" not in args:
            raise ToolError("action 'add' needs 'text'")
        if len(items) >= MAX_ITEMS:
            raise ToolError(f"the todo list is full ({MAX_ITEMS} items); clear it or finish some")
        next_id = int(todos.get("next_id", 1))
        items.append({"id": next_id, "text": args["text"], "status": args.get("status", "pending")})
        todos["next_id"] = next_id + 1
    elif action == "update":
        if "id" not in args or not ({"status", "text"} & set(args)):
            raise ToolError("action 'update' needs 'id' and a new 'status' and/or 'text'")
        item = next((item for item in items if item.get("id") == args["id"]), None)
        if item is None:
            known = ", ".join(f"#{item['id']}" for item in items) or "none"
            raise ToolError(f"no todo item #{args['id']} (items: {known})")
        for field in ("status", "text"):
            if field in args:
                item[field] = args[field]
    elif action == "clear":
        todos["items"] = []


def todo_spec() -> ToolSpec:
    """Build the ``todo`` tool (toolset ``todo``)."""

    def handle(args: dict[str, Any], ctx: ToolContext) -> str:
        todos = load_todos(ctx.env.state, ctx.task_id)
        if args["action"] != "list":
            _apply(todos, args)
            ctx.env.state.save(ctx.task_id, TODO_STATE_KEY, todos)
        return _render(todos)

    return ToolSpec(
        name="todo",
        description=(
            "Keep a todo list for this session's work: 'add' an item, 'update' its status "
            "(pending, in_progress, done) or text by number, 'list' it, 'clear' it."
        ),
        parameters=TODO_PARAMETERS,
        toolset="todo",
        handler=handle,
    )


__all__ = ["TODO_STATE_KEY", "TODO_STATUSES", "load_todos", "todo_spec"]
