"""ToolRegistry: generations, deterministic schemas, toolset filtering and safe dispatch."""

from __future__ import annotations

from typing import Any

import pytest

from agent.tools import (
    BUILTIN_TOOLSETS,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    default_registry,
)
from cluster.errors import LeaseLost, ToolError

OBJECT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def spec(name: str, toolset: str = "demo", handler: Any = None, **parameters: Any) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=f"the {name} tool",
        parameters={**OBJECT, **parameters},
        toolset=toolset,
        handler=handler or (lambda args, ctx: f"{name} ran with {args}"),
    )


def test_generation_bumps_on_every_register_and_deregister() -> None:
    registry = ToolRegistry()
    assert registry.generation == 0
    registry.register(spec("a"))
    registry.register(spec("b"))
    assert registry.generation == 2
    registry.register(spec("a"))  # replacing counts as a change
    assert registry.generation == 3
    assert registry.deregister("a") is True
    assert registry.generation == 4
    assert registry.deregister("a") is False  # nothing changed, nothing to bust
    assert registry.generation == 4


def test_schemas_are_neutral_sorted_and_deterministic() -> None:
    first, second = ToolRegistry(), ToolRegistry()
    for name in ("zeta", "alpha", "mid"):
        first.register(spec(name))
    for name in ("mid", "zeta", "alpha"):
        second.register(spec(name))
    schemas = first.schemas()
    assert [s["name"] for s in schemas] == ["alpha", "mid", "zeta"]
    assert schemas == second.schemas()
    assert set(schemas[0]) == {"name", "description", "parameters"}
    schemas[0]["parameters"]["properties"]["injected"] = {}  # callers get copies
    assert first.schemas()[0]["parameters"]["properties"] == {}


def test_toolset_filtering() -> None:
    registry = ToolRegistry()
    registry.register(spec("a", toolset="one"))
    registry.register(spec("b", toolset="two"))
    registry.register(spec("c", toolset="two"))
    assert registry.toolsets() == {"one", "two"}
    assert [s["name"] for s in registry.schemas(["two"])] == ["b", "c"]
    assert [s.name for s in registry.specs({"one", "missing"})] == ["a"]
    assert [s["name"] for s in registry.schemas(None)] == ["a", "b", "c"]
    assert registry.schemas([]) == []


def test_a_name_clash_across_toolsets_is_refused() -> None:
    registry = ToolRegistry()
    registry.register(spec("echo", toolset="one"))
    with pytest.raises(ToolError, match="clashes.*toolset 'one'"):
        registry.register(spec("echo", toolset="two"))
    assert registry.generation == 1


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ToolError, match="invalid"):
        spec("has space")
    with pytest.raises(ToolError, match="type 'object'"):
        ToolSpec("x", "d", {"type": "string"}, "demo", lambda args, ctx: "")


def test_dispatch_runs_the_handler_with_args_and_context(ctx: ToolContext) -> None:
    seen: list[tuple[dict[str, Any], ToolContext]] = []

    def handler(args: dict[str, Any], context: ToolContext) -> str:
        seen.append((args, context))
        return "done"

    registry = ToolRegistry()
    registry.register(spec("t", handler=handler, properties={"n": {"type": "integer"}}))
    assert registry.dispatch("t", {"n": 3}, ctx) == ToolResult("done", False)
    assert seen == [({"n": 3}, ctx)]


def test_unknown_tool_is_an_error_result_naming_the_available_ones(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    registry.register(spec("real"))
    result = registry.dispatch("imaginary", {}, ctx)
    assert result.is_error
    assert "unknown tool 'imaginary'" in result.content and "real" in result.content


def test_tool_outside_the_allowed_toolsets_is_unknown(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    registry.register(spec("secret", toolset="admin"))
    assert registry.dispatch("secret", {}, ctx, toolsets=["demo"]).is_error
    assert not registry.dispatch("secret", {}, ctx, toolsets=["admin"]).is_error


def test_handler_exceptions_become_error_results(ctx: ToolContext) -> None:
    def broken(args: dict[str, Any], context: ToolContext) -> str:
        raise KeyError("missing-thing")

    def refusing(args: dict[str, Any], context: ToolContext) -> str:
        raise ToolError("file not found: x.txt")

    registry = ToolRegistry()
    registry.register(spec("broken", handler=broken))
    registry.register(spec("refusing", handler=refusing))
    result = registry.dispatch("broken", {}, ctx)
    assert result.is_error and "KeyError" in result.content and "missing-thing" in result.content
    assert registry.dispatch("refusing", {}, ctx) == ToolResult(
        "refusing failed: file not found: x.txt", True
    )


def test_lease_lost_is_not_swallowed(ctx: ToolContext) -> None:
    def fenced(args: dict[str, Any], context: ToolContext) -> str:
        raise LeaseLost("turn lease of session s was taken over")

    registry = ToolRegistry()
    registry.register(spec("fenced", handler=fenced))
    with pytest.raises(LeaseLost):
        registry.dispatch("fenced", {}, ctx)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing required 'mode'"),
        ({"mode": "fast", "count": "3"}, "'count' must be an integer, got '3'"),
        ({"mode": "warp"}, "'mode' must be one of fast, slow, got 'warp'"),
        ({"mode": "fast", "count": 0}, "'count' must be >= 1"),
        ({"mode": "fast", "extra": 1}, "unknown 'extra' (allowed: count, mode)"),
        ({"mode": "fast", "count": True}, "'count' must be an integer"),
        ("not-a-dict", "must be a JSON object"),
    ],
)
def test_invalid_arguments_get_a_clear_error(ctx: ToolContext, args: Any, message: str) -> None:
    calls: list[Any] = []

    def record(arguments: dict[str, Any], context: ToolContext) -> str:
        calls.append(arguments)
        return "ok"

    registry = ToolRegistry()
    registry.register(
        spec(
            "t",
            handler=record,
            properties={
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "count": {"type": "integer", "minimum": 1},
            },
            required=["mode"],
        )
    )
    result = registry.dispatch("t", args, ctx)
    assert result.is_error and message in result.content, result.content
    assert "invalid arguments for tool 't'" in result.content
    assert calls == []


def test_none_arguments_mean_no_arguments(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    registry.register(spec("t"))
    assert registry.dispatch("t", None, ctx) == ToolResult("t ran with {}", False)


def test_default_registry_holds_the_builtins_each_time_anew() -> None:
    registry = default_registry()
    assert registry.toolsets() == set(BUILTIN_TOOLSETS)
    assert [s["name"] for s in registry.schemas()] == ["memory", "process", "terminal", "todo"]
    assert default_registry() is not registry
    assert default_registry().schemas() == registry.schemas()
    for schema in registry.schemas():
        assert schema["description"] and schema["parameters"]["type"] == "object"
