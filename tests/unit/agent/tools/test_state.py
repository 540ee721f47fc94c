"""One contract for every ToolStateStore implementation, plus file-store specifics."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.tools.state import (
    FileToolStateStore,
    InMemoryToolStateStore,
    ToolStateStore,
    safe_task_id,
)
from cluster.errors import ToolError

StoreFactory = Callable[[Path], ToolStateStore]

STORES: dict[str, StoreFactory] = {
    "memory": lambda _root: InMemoryToolStateStore(),
    "file": lambda root: FileToolStateStore(root / "state"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ToolStateStore:
    return STORES[request.param](tmp_path)


def test_is_a_tool_state_store(store: ToolStateStore) -> None:
    assert isinstance(store, ToolStateStore)


def test_missing_value_loads_as_none(store: ToolStateStore) -> None:
    assert store.load("task", "todo") is None


def test_save_then_load_round_trips_json_values(store: ToolStateStore) -> None:
    value = {"items": [{"id": 1, "text": "ünïcode", "done": False}], "ratio": 0.5, "none": None}
    store.save("task", "todo", value)
    assert store.load("task", "todo") == value


def test_save_replaces_the_old_value(store: ToolStateStore) -> None:
    store.save("task", "k", [1])
    store.save("task", "k", [2])
    assert store.load("task", "k") == [2]


def test_loaded_values_are_copies(store: ToolStateStore) -> None:
    store.save("task", "k", {"items": [1]})
    loaded = store.load("task", "k")
    assert loaded is not None
    loaded["items"].append(2)
    assert store.load("task", "k") == {"items": [1]}


def test_keys_and_tasks_are_independent(store: ToolStateStore) -> None:
    store.save("a", "k", 1)
    store.save("a", "other", 2)
    store.save("b", "k", 3)
    assert (store.load("a", "k"), store.load("a", "other"), store.load("b", "k")) == (1, 2, 3)


def test_delete_task_forgets_only_that_task(store: ToolStateStore) -> None:
    store.save("a", "k", 1)
    store.save("a", "j", 2)
    store.save("b", "k", 3)
    store.delete_task("a")
    assert store.load("a", "k") is None and store.load("a", "j") is None
    assert store.load("b", "k") == 3
    store.delete_task("a")  # idempotent
    store.delete_task("never-seen")


def test_non_json_values_are_rejected_with_a_clear_error(store: ToolStateStore) -> None:
    with pytest.raises(ToolError, match="not JSON-safe"):
        store.save("task", "k", {"when": object()})
    assert store.load("task", "k") is None


def test_task_ids_that_look_alike_do_not_collide(store: ToolStateStore) -> None:
    store.save("a/b", "k", 1)
    store.save("a_b", "k", 2)
    assert (store.load("a/b", "k"), store.load("a_b", "k")) == (1, 2)


def test_concurrent_saves_of_different_keys_are_all_kept(store: ToolStateStore) -> None:
    def writer(index: int) -> None:
        for round_ in range(20):
            store.save("task", f"key-{index}", round_)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [store.load("task", f"key-{i}") for i in range(8)] == [19] * 8


def test_file_store_writes_one_json_file_per_task_without_leftovers(tmp_path: Path) -> None:
    store = FileToolStateStore(tmp_path)
    store.save("session:1", "memory", {"notes": []})
    store.save("session:1", "todo", [])
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock")
    assert files == [store.path_for("session:1").name]
    assert json.loads(store.path_for("session:1").read_text()) == {
        "memory": {"notes": []},
        "todo": [],
    }


def test_two_file_stores_on_one_directory_see_each_others_writes(tmp_path: Path) -> None:
    first, second = FileToolStateStore(tmp_path), FileToolStateStore(tmp_path)
    first.save("t", "a", 1)
    second.save("t", "b", 2)
    assert (first.load("t", "b"), second.load("t", "a")) == (2, 1)


def test_file_store_reports_a_corrupt_file_and_how_to_fix_it(tmp_path: Path) -> None:
    store = FileToolStateStore(tmp_path)
    store.path_for("t").write_text("{not json")
    with pytest.raises(ToolError, match="corrupt.*delete it"):
        store.load("t", "k")


def test_safe_task_id_is_path_safe_and_stable() -> None:
    name = safe_task_id("../../etc/passwd")
    assert "/" not in name and not name.startswith(".")
    assert name == safe_task_id("../../etc/passwd")
    assert safe_task_id("a/b") != safe_task_id("a_b")
    with pytest.raises(ToolError, match="non-empty"):
        safe_task_id("")
