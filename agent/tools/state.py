"""Persisted per-task tool state: the ``ToolStateStore`` protocol and two stores.

Tools keep nothing about a task in Python objects: an agent may be dropped and
rebuilt at any time for the same task id, so the terminal's cwd and env, the
background-process table, the todo list and the memory notes all live in a
``ToolStateStore`` keyed by ``(task_id, key)``. Values are JSON-safe (and so
msgpack-safe): ``None``, bools, numbers, strings, lists and string-keyed dicts.

Two implementations live here: :class:`InMemoryToolStateStore` (tests, single
process) and :class:`FileToolStateStore` (one JSON file per task, atomic
replace, safe across threads and processes). The Redis implementation, fenced
by the running turn's lease token, lives in ``cluster/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cluster.errors import ToolError

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_task_id(task_id: str) -> str:
    """Return a file-name-safe, collision-free form of ``task_id``.

    Unsafe characters become ``_`` and 128 bits of a SHA-256 of the original
    id are appended, so ``"a/b"`` and ``"a_b"`` never share a directory or
    file, and nobody can craft an id whose directory is another session's.

    Raises:
        ToolError: ``task_id`` is not a non-empty string.
    """
    if not isinstance(task_id, str) or not task_id:
        raise ToolError(f"task_id must be a non-empty string, got {task_id!r}")
    readable = _UNSAFE_CHARS.sub("_", task_id)[:64].strip(".") or "task"
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{readable}-{digest}"


def encode_value(task_id: str, key: str, value: Any) -> str:
    """Serialize a state value to JSON, rejecting anything that is not JSON-safe.

    Raises:
        ToolError: the value holds something JSON cannot represent.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ToolError(
            f"tool state {key!r} of task {task_id!r} is not JSON-safe ({exc}); "
            "store only None, bools, numbers, strings, lists and string-keyed dicts"
        ) from exc


@runtime_checkable
class ToolStateStore(Protocol):
    """Where tools persist per-task state between agents, turns and hosts.

    Kept minimal on purpose so a Redis implementation fenced by a lease token
    can honour it with one atomic operation per method.
    """

    def load(self, task_id: str, key: str) -> Any | None:
        """Return the value saved under ``(task_id, key)``, or ``None``."""
        ...

    def save(self, task_id: str, key: str, value: Any) -> None:
        """Persist a JSON-safe ``value`` under ``(task_id, key)``, replacing any old one."""
        ...

    def delete_task(self, task_id: str) -> None:
        """Forget every key of ``task_id`` (no error if there is none)."""
        ...


class InMemoryToolStateStore:
    """A process-local store; values are kept as JSON text, so callers never share objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = {}

    def load(self, task_id: str, key: str) -> Any | None:
        """Return a fresh copy of the value under ``(task_id, key)``, or ``None``."""
        with self._lock:
            raw = self._data.get(task_id, {}).get(key)
        return None if raw is None else json.loads(raw)

    def save(self, task_id: str, key: str, value: Any) -> None:
        """Store a JSON-safe copy of ``value``.

        Raises:
            ToolError: ``value`` is not JSON-safe.
        """
        raw = encode_value(task_id, key, value)
        with self._lock:
            self._data.setdefault(task_id, {})[key] = raw

    def delete_task(self, task_id: str) -> None:
        """Forget every key of ``task_id``."""
        with self._lock:
            self._data.pop(task_id, None)


class FileToolStateStore:
    """One JSON file per task under ``root``.

    Every write replaces the file atomically (temp file in the same directory,
    fsync, ``os.replace``), so a reader never sees half a file. A thread lock
    plus an ``flock`` on ``root/.lock`` serialize read-modify-write cycles
    between threads, between store instances and between processes sharing
    the directory.

    Args:
        root: directory holding the task files; created on demand.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def path_for(self, task_id: str) -> Path:
        """Return the JSON file that holds ``task_id``'s state."""
        return self.root / f"{safe_task_id(task_id)}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with self._lock, os.fdopen(fd, "r+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _read(self, task_id: str) -> dict[str, Any]:
        path = self.path_for(task_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ToolError(
                f"tool state file {path} is corrupt ({exc}); delete it to reset task {task_id!r}"
            ) from exc
        if not isinstance(data, dict):
            raise ToolError(f"tool state file {path} does not hold a JSON object; delete it")
        return data

    def load(self, task_id: str, key: str) -> Any | None:
        """Return the value under ``(task_id, key)``, or ``None``.

        Raises:
            ToolError: the task's file exists but is not valid JSON.
        """
        with self._locked():
            return self._read(task_id).get(key)

    def save(self, task_id: str, key: str, value: Any) -> None:
        """Store ``value`` under ``(task_id, key)`` with an atomic file replace.

        Raises:
            ToolError: ``value`` is not JSON-safe or the task's file is corrupt.
        """
        encode_value(task_id, key, value)  # validate before touching the file
        with self._locked():
            data = self._read(task_id)
            data[key] = value
            self._write(self.path_for(task_id), data)

    def delete_task(self, task_id: str) -> None:
        """Remove ``task_id``'s file."""
        with self._locked():
            self.path_for(task_id).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                json.dump(data, tmp, allow_nan=False, separators=(",", ":"), sort_keys=True)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


__all__ = [
    "FileToolStateStore",
    "InMemoryToolStateStore",
    "ToolStateStore",
    "encode_value",
    "safe_task_id",
]
