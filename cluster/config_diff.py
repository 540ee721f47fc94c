"""Differences between two config documents, key path by key path (pure).

``agent-cluster config diff A B`` prints :func:`diff_configs` of two stored
versions, and marks the keys whose change rebuilds cached agents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigChange", "diff_configs"]

_MISSING: Any = object()


@dataclass(frozen=True)
class ConfigChange:
    """One key whose value differs.

    Attributes:
        path: Dotted key path (``compression.threshold``).
        before: Value in the first document (``None`` with ``added``).
        after: Value in the second document (``None`` with ``removed``).
        kind: ``"added"``, ``"removed"`` or ``"changed"``.
    """

    path: str
    before: Any
    after: Any
    kind: str

    def line(self) -> str:
        """``~ model.default: 'a' -> 'b'`` (``+`` added, ``-`` removed)."""
        if self.kind == "added":
            return f"+ {self.path}: {_show(self.after)}"
        if self.kind == "removed":
            return f"- {self.path}: {_show(self.before)}"
        return f"~ {self.path}: {_show(self.before)} -> {_show(self.after)}"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _walk(a: Any, b: Any, path: str) -> Iterator[ConfigChange]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            child = f"{path}.{key}" if path else str(key)
            yield from _walk(a.get(key, _MISSING), b.get(key, _MISSING), child)
        return
    if a is _MISSING:
        yield ConfigChange(path, None, b, "added")
    elif b is _MISSING:
        yield ConfigChange(path, a, None, "removed")
    elif a != b or type(a) is not type(b):
        yield ConfigChange(path, a, b, "changed")


def diff_configs(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ConfigChange]:
    """Every key path whose value differs between two documents, sorted by path.

    Mappings are compared key by key; lists and scalars as whole values.
    """
    return list(_walk(before, after, ""))
