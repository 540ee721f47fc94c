"""``notify_on_complete`` in the process tool: handed to the worker's watcher, or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.tools import ToolContext, ToolEnvironment, default_registry
from agent.tools.background import new_record
from agent.tools.process import completion_message, lost_message
from agent.tools.sandbox_config import SandboxConfig


class Watcher:
    def __init__(self) -> None:
        self.watched: list[tuple[str, dict[str, Any]]] = []

    def watch(self, task_id: str, record: dict[str, Any]) -> None:
        self.watched.append((task_id, record))


def _env(tmp_path: Path, watcher: Watcher | None) -> ToolEnvironment:
    env = ToolEnvironment.default(tmp_path / "home", sandbox=SandboxConfig(backend="local"))
    return (
        env
        if watcher is None
        else ToolEnvironment(
            sandbox_root=env.sandbox_root,
            state=env.state,
            sandbox_config=env.sandbox_config,
            control_root=env.control_root,
            completion_watcher=watcher,
        )
    )


def _start(env: ToolEnvironment, **args: Any) -> str:
    result = default_registry().dispatch(
        "process", {"action": "start", "command": "true", **args}, ToolContext("task-1", env)
    )
    return result.content


def test_a_process_started_with_notify_is_handed_to_the_watcher(tmp_path: Path) -> None:
    watcher = Watcher()
    reply = _start(_env(tmp_path, watcher), notify_on_complete=True)
    assert "you will get a message with its exit status" in reply
    assert [(task, record["id"], record["notify"]) for task, record in watcher.watched] == [
        ("task-1", "p1", True)
    ]


def test_without_notify_nothing_is_watched(tmp_path: Path) -> None:
    watcher = Watcher()
    assert "use action 'poll'" in _start(_env(tmp_path, watcher))
    assert watcher.watched == []


def test_notify_without_a_watcher_is_refused_with_what_to_do(tmp_path: Path) -> None:
    reply = _start(_env(tmp_path, None), notify_on_complete=True)
    assert "notify_on_complete needs a cluster worker" in reply and "poll it instead" in reply


@pytest.mark.parametrize("bad", ["yes", 1])
def test_notify_must_be_a_boolean(tmp_path: Path, bad: object) -> None:
    assert "'notify_on_complete' must be a boolean" in _start(
        _env(tmp_path, Watcher()), notify_on_complete=bad
    )


def test_the_messages_carry_exit_status_output_tail_and_the_lost_worker(tmp_path: Path) -> None:
    log, exit_file = tmp_path / "p7.log", tmp_path / "p7.exit"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    exit_file.write_text("2\n")
    record = new_record("p7", "make all", 999_999, 999_999, log, exit_file, 1_700_000_000.0)
    ended = completion_message(record)
    assert ended.startswith("[background process p7 ended: exited (code 2)]")
    assert "$ make all" in ended and "line 29" in ended and "line 9\n" not in ended
    lost = lost_message(record, "w3")
    assert lost.startswith("[background process p7 lost with its host: worker w3")
