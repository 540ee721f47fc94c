"""Differences between two config documents, key path by key path (pure).

``agent-cluster config diff A B`` prints :func:`diff_configs` of two stored
versions. A push that would remove keys from the current config is refused
by :func:`check_removals` unless confirmed (``config push --yes``, HTTP
``?confirm_removals=1``): a removed key silently falls back to its default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.errors import ConfigError

__all__ = ["ConfigChange", "check_removals", "diff_configs", "removed_paths"]

_SHOWN_REMOVALS = 8

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


def removed_paths(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The key paths of ``before`` that ``after`` no longer has, sorted."""
    return [change.path for change in diff_configs(before, after) if change.kind == "removed"]


def check_removals(before: Mapping[str, Any], after: Mapping[str, Any], *, confirm: str) -> None:
    """Refuse a push that removes keys of the current config unless it was confirmed.

    Args:
        before: The current config document.
        after: The document about to be published.
        confirm: How the caller confirms (``--yes``), named in the error.

    Raises:
        ConfigError: one line naming the removed keys and how to confirm.
    """
    removed = removed_paths(before, after)
    if not removed:
        return
    shown = ", ".join(removed[:_SHOWN_REMOVALS])
    more = f" and {len(removed) - _SHOWN_REMOVALS} more" if len(removed) > _SHOWN_REMOVALS else ""
    raise ConfigError(
        f"this push removes {len(removed)} key(s) of the current config: {shown}{more}; "
        f"they would fall back to their defaults: add {confirm} if that is intended"
    )
