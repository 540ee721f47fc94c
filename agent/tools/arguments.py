"""Validation of tool-call arguments against a tool's JSON schema.

Models get arguments wrong often; a clear message ("'status' must be one of
pending, in_progress, done, got 'finished'") lets them fix the call on the next
step. This checks the JSON-schema subset tool schemas use in practice:
``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength`` and ``items``. Other keywords are ignored, so an
MCP server's richer schema is checked as far as this goes and the server
checks the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cluster.errors import ToolError

_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _matches_type(value: Any, type_name: str) -> bool:
    if type_name == "object":
        return isinstance(value, dict)
    if type_name == "array":
        return isinstance(value, list)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "null":
        return value is None
    return True  # an unknown type name is the server's business


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_type(value: Any, schema: Mapping[str, Any], where: str) -> None:
    declared = schema.get("type")
    if declared is None:
        return
    names = [declared] if isinstance(declared, str) else list(declared)
    if not any(_matches_type(value, name) for name in names):
        wanted = " or ".join(_TYPE_NAMES.get(name, str(name)) for name in names)
        raise ToolError(f"{where} must be {wanted}, got {_describe(value)}")


def _check_bounds(value: Any, schema: Mapping[str, Any], where: str) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and value < low:
            raise ToolError(f"{where} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ToolError(f"{where} must be <= {high}, got {value}")
    if isinstance(value, str):
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if shortest is not None and len(value) < shortest:
            raise ToolError(f"{where} must have at least {shortest} characters")
        if longest is not None and len(value) > longest:
            raise ToolError(f"{where} must have at most {longest} characters, got {len(value)}")


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], where: str) -> None:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    missing = [name for name in schema.get("required") or () if name not in value]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ToolError(f"{where} is missing required {names}")
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            allowed = ", ".join(sorted(properties)) or "none"
            raise ToolError(
                f"{where} has unknown {', '.join(repr(k) for k in unknown)} (allowed: {allowed})"
            )
    for name, sub in properties.items():
        if name in value and isinstance(sub, Mapping):
            _check(value[name], sub, repr(name) if where == "arguments" else f"{where}.{name}")


def _check(value: Any, schema: Mapping[str, Any], where: str) -> None:
    _check_type(value, schema, where)
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        choices = ", ".join(str(choice) for choice in enum)
        raise ToolError(f"{where} must be one of {choices}, got {_describe(value)}")
    _check_bounds(value, schema, where)
    if isinstance(value, dict):
        _check_object(value, schema, where)
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check(item, items, f"{where}[{index}]")


def validate_arguments(arguments: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against ``schema`` and return them as a dict.

    Raises:
        ToolError: the arguments do not match; the message names the field and the fix.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolError(f"arguments must be a JSON object, got {_describe(arguments)}")
    _check(arguments, schema, "arguments")
    return arguments


__all__ = ["validate_arguments"]
