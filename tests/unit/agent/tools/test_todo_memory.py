"""The todo and memory tools keep their state in the store, not in the agent."""

from __future__ import annotations

import pytest

from agent.tools import (
    InMemoryToolStateStore,
    ToolContext,
    ToolEnvironment,
    default_registry,
    memory_notes,
)


def call(env: ToolEnvironment, tool: str, task_id: str = "task-1", **args: object) -> str:
    """Dispatch through a brand-new registry and context, as a rebuilt agent would."""
    result = default_registry().dispatch(tool, args, ToolContext(task_id, env))
    assert not result.is_error, result.content
    return result.content


def error(env: ToolEnvironment, tool: str, **args: object) -> str:
    result = default_registry().dispatch(tool, args, ToolContext("task-1", env))
    assert result.is_error
    return result.content


def test_todo_items_survive_a_new_agent_and_a_new_environment_object(
    env: ToolEnvironment,
) -> None:
    call(env, "todo", action="add", text="write tests")
    call(env, "todo", action="add", text="ship it")
    call(env, "todo", action="update", id=1, status="in_progress")
    rebuilt = ToolEnvironment.default(env.sandbox_root.parent)  # what a new agent would build
    listing = call(rebuilt, "todo", action="list")
    assert listing == "todo (0/2 done):\n#1 [in_progress] write tests\n#2 [pending] ship it"


def test_todo_update_text_and_done_count(env: ToolEnvironment) -> None:
    call(env, "todo", action="add", text="draft", status="done")
    listing = call(env, "todo", action="update", id=1, text="final")
    assert listing == "todo (1/1 done):\n#1 [done] final"


def test_todo_clear_and_ids_keep_growing(env: ToolEnvironment) -> None:
    call(env, "todo", action="add", text="a")
    assert call(env, "todo", action="clear") == "the todo list is empty"
    assert "#2 [pending] b" in call(env, "todo", action="add", text="b")


def test_todo_errors_say_what_is_missing(env: ToolEnvironment) -> None:
    assert "needs 'text'" in error(env, "todo", action="add")
    assert "needs 'id'" in error(env, "todo", action="update", status="done")
    assert "no todo item #9" in error(env, "todo", action="update", id=9, status="done")
    assert "must be one of pending, in_progress, done" in error(
        env, "todo", action="update", id=1, status="finished"
    )


def test_todo_lists_are_per_task(env: ToolEnvironment) -> None:
    call(env, "todo", task_id="a", action="add", text="for a")
    assert call(env, "todo", task_id="b", action="list") == "the todo list is empty"


def test_memory_notes_feed_the_system_prompt_and_survive_rebuilds(env: ToolEnvironment) -> None:
    assert memory_notes(env, "task-1") == []
    call(env, "memory", action="add", text="user prefers metric units")
    call(env, "memory", action="add", text="project lives in ~/src/app")
    rebuilt = ToolEnvironment.default(env.sandbox_root.parent)
    assert memory_notes(rebuilt, "task-1") == [
        "user prefers metric units",
        "project lives in ~/src/app",
    ]
    assert call(rebuilt, "memory", action="remove", id=1).startswith("removed note #1")
    assert memory_notes(env, "task-1") == ["project lives in ~/src/app"]
    assert call(env, "memory", action="list") == "#2 project lives in ~/src/app"


def test_memory_errors(env: ToolEnvironment) -> None:
    assert "needs 'text'" in error(env, "memory", action="add")
    assert "no memory note #4" in error(env, "memory", action="remove", id=4)
    assert "at most 2000 characters" in error(env, "memory", action="add", text="x" * 2001)


def test_with_state_swaps_the_store(env: ToolEnvironment) -> None:
    other = env.with_state(InMemoryToolStateStore())
    call(other, "memory", action="add", text="only in memory")
    assert memory_notes(other, "task-1") == ["only in memory"]
    assert memory_notes(env, "task-1") == []
    assert other.sandbox_root == env.sandbox_root


@pytest.mark.parametrize("tool", ["todo", "memory"])
def test_teardown_deletes_the_notes_and_the_list(env: ToolEnvironment, tool: str) -> None:
    call(env, tool, action="add", text="something")
    env.teardown("task-1")
    assert memory_notes(env, "task-1") == []
    assert call(env, "todo", action="list") == "the todo list is empty"
    env.teardown("task-1")
