"""Schema node types: a tree of them describes a YAML document and checks it.

A :class:`Section` has fixed keys, a :class:`Table` maps free names to
entries of one shape, a :class:`ListOf` holds scalars and a :class:`Scalar`
is a leaf with a type, a range or a set of choices; a :class:`Refused` key is
one the product knows but does not take (retired, or not supported yet),
refused with the reason whatever its value. ``check(value, path,
where)`` raises :class:`~cluster.errors.ConfigError` naming the key path, what
was expected, what was found and (through :class:`Located`) the YAML line.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import ConfigError

__all__ = ["ListOf", "Located", "Node", "Refused", "Scalar", "Section", "Table", "describe"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class Located:
    """Maps a key path to the line of the YAML node it came from."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines

    def at(self, path: str) -> str:
        line = self.lines.get(path)
        while line is None and path:
            path = path.rpartition(".")[0] if "." in path else ""
            line = self.lines.get(path)
        return f" ({self.source} line {line})" if line else ""


def describe(value: Any) -> str:
    """A value as an error message shows it (a repr, or the type of a container)."""
    return repr(value) if not isinstance(value, Mapping | list) else type(value).__name__


@dataclass(frozen=True)
class Scalar:
    """A leaf value.

    Attributes:
        kind: ``"str"``, ``"int"``, ``"number"`` or ``"bool"``.
        doc: What the value means (rendered by :func:`schema_lines`).
        choices: Allowed values, if a closed set.
        low, high: Inclusive bounds (numbers); ``low_open`` makes ``low`` exclusive.
        nullable: ``null`` is accepted (means "unset").
        pattern: A regular expression a string must match, with ``pattern_doc``
            saying it in words.
    """

    kind: str
    doc: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    nullable: bool = False
    pattern: re.Pattern[str] | None = None
    pattern_doc: str = ""

    def expected(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = f"a string ({self.pattern_doc})" if self.pattern_doc else "a string"
        else:
            text = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any, path: str, where: Located) -> None:
        if value is None and self.nullable:
            return
        if not self._fits(value):
            raise ConfigError(
                f"{path} must be {self.expected()}, got {describe(value)}{where.at(path)}"
            )

    def _fits(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            if not isinstance(value, str) or (self.pattern and not self.pattern.match(value)):
                return False
            return not self.choices or value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


@dataclass(frozen=True)
class ListOf:
    """A list whose every item fits ``item``."""

    item: Scalar
    doc: str
    nullable: bool = False

    def check(self, value: Any, path: str, where: Located) -> None:
        if value is None and self.nullable:
            return
        if not isinstance(value, list):
            raise ConfigError(
                f"{path} must be a list of {self.item.expected()}, got {describe(value)}"
                f"{where.at(path)}"
            )
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]", where)


@dataclass(frozen=True)
class Section:
    """A mapping with a fixed set of keys (unknown keys are refused)."""

    doc: str
    keys: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def check(self, value: Any, path: str, where: Located) -> None:
        shown = path or "the config"
        if not isinstance(value, Mapping):
            raise ConfigError(f"{shown} must be a mapping, got {describe(value)}{where.at(path)}")
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            node = self.keys.get(key) if isinstance(key, str) else None
            if node is None:
                known = ", ".join(sorted(self.keys))
                raise ConfigError(
                    f"{child} is not a known setting (known in {shown}: {known}){where.at(child)}"
                )
            node.check(item, child, where)
        for key in self.required:
            if key not in value:
                raise ConfigError(f"{path}.{key} is missing: {self.keys[key].doc}{where.at(path)}")


@dataclass(frozen=True)
class Table:
    """A mapping of names (1-32 letters, digits, ``_``, ``-``) to entries of one shape."""

    entry: Section
    doc: str
    names: tuple[str, ...] = ()

    def check(self, value: Any, path: str, where: Located) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{path} must be a mapping of name to settings, got {describe(value)}"
                f"{where.at(path)}"
            )
        for name, entry in value.items():
            child = f"{path}.{name}"
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(
                    f"{path}: name {name!r} is invalid: use 1-32 letters, digits, '_' or '-'"
                    f"{where.at(child)}"
                )
            if self.names and name not in self.names:
                raise ConfigError(
                    f"{child}: unknown name, expected one of {', '.join(self.names)}"
                    f"{where.at(child)}"
                )
            self.entry.check(entry, child, where)


@dataclass(frozen=True)
class Refused:
    """A key the product knows but does not take: any value (even null) is refused.

    Attributes:
        reason: Why, and what to do instead (the end of the one-line error).
    """

    reason: str

    @property
    def doc(self) -> str:
        """What the schema says of the key: the reason it is refused."""
        return self.reason

    def check(self, value: Any, path: str, where: Located) -> None:
        raise ConfigError(f"{path} is refused: {self.reason}{where.at(path)}")


Node = Scalar | ListOf | Section | Table | Refused
