"""MCPManager against a real MCP server (tests/integration/agent/tools/mcp_server.py) over stdio."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tools import (
    InMemoryToolStateStore,
    MCPManager,
    MCPServerConfig,
    ToolContext,
    ToolEnvironment,
    ToolRegistry,
    default_registry,
    parse_mcp_servers,
)
from cluster.errors import ToolError

pytestmark = pytest.mark.integration

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    """The file the test server reads at every listing to decide which tools to offer."""
    return tmp_path / "tools.json"


def server_config(name: str, tools_file: Path) -> MCPServerConfig:
    return MCPServerConfig(
        name=name,
        command=sys.executable,
        args=(str(SERVER_SCRIPT),),
        env={"MCP_TEST_TOOLS_FILE": str(tools_file)},
    )


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(
        "task-1", ToolEnvironment(sandbox_root=tmp_path, state=InMemoryToolStateStore())
    )


@pytest.fixture
def registry() -> ToolRegistry:
    return default_registry()


@pytest.fixture
def manager(registry: ToolRegistry, tools_file: Path) -> Iterator[MCPManager]:
    mcp = MCPManager(registry=registry, servers=[server_config("test", tools_file)])
    mcp.start()
    yield mcp
    mcp.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ToolRegistry, MCPManager]]:
    """One server for the tests that only list and call (starting one takes about a second)."""
    registry = default_registry()
    tools_file = tmp_path_factory.mktemp("mcp") / "tools.json"
    mcp = MCPManager(registry=registry, servers=[server_config("test", tools_file)])
    mcp.start()
    yield registry, mcp
    mcp.close()


def test_discovery_registers_the_servers_tools_in_their_own_toolset(
    shared: tuple[ToolRegistry, MCPManager],
) -> None:
    registry, manager = shared
    assert registry.toolsets() == {"memory", "process", "terminal", "todo", "mcp-test"}
    schemas = registry.schemas(["mcp-test"])
    assert [s["name"] for s in schemas] == ["mcp_test_add", "mcp_test_echo"]
    add = schemas[0]
    assert add["description"] == "Add two integers."
    assert add["parameters"]["type"] == "object"
    assert add["parameters"]["required"] == ["a", "b"]
    assert add["parameters"]["properties"]["a"]["type"] == "integer"
    assert manager.tool_names("test") == ["mcp_test_add", "mcp_test_echo"]


def test_calls_reach_the_server(shared: tuple[ToolRegistry, MCPManager], ctx: ToolContext) -> None:
    registry, _ = shared
    assert registry.dispatch("mcp_test_add", {"a": 2, "b": 40}, ctx).content == "42"
    assert registry.dispatch("mcp_test_echo", {"text": "héllo"}, ctx).content == "héllo"
    bad_args = registry.dispatch("mcp_test_add", {"a": 2}, ctx)
    assert bad_args.is_error and "missing required 'b'" in bad_args.content


def test_calls_from_many_threads_at_once(
    shared: tuple[ToolRegistry, MCPManager], ctx: ToolContext
) -> None:
    registry, _ = shared
    results: dict[int, str] = {}

    def worker(index: int) -> None:
        results[index] = registry.dispatch("mcp_test_add", {"a": index, "b": 1}, ctx).content

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: str(i + 1) for i in range(8)}


def test_tool_failures_are_error_results(
    registry: ToolRegistry, manager: MCPManager, ctx: ToolContext, tools_file: Path
) -> None:
    tools_file.write_text(json.dumps(["add", "fail"]))
    manager.reload()
    failed = registry.dispatch("mcp_test_fail", {"reason": "disk full"}, ctx)
    assert failed.is_error and failed.content.startswith("mcp_test_fail failed:")


def test_reload_picks_up_new_tools_drops_vanished_ones_and_bumps_the_generation(
    registry: ToolRegistry, manager: MCPManager, ctx: ToolContext, tools_file: Path
) -> None:
    before = registry.generation
    manager.reload()  # nothing changed on the server
    assert registry.generation == before

    tools_file.write_text(json.dumps(["add", "shout"]))
    manager.reload()

    assert registry.generation > before
    assert [s["name"] for s in registry.schemas(["mcp-test"])] == ["mcp_test_add", "mcp_test_shout"]
    assert registry.dispatch("mcp_test_shout", {"text": "quiet"}, ctx).content == "QUIET"
    gone = registry.dispatch("mcp_test_echo", {"text": "x"}, ctx)
    assert gone.is_error and "unknown tool" in gone.content


def test_reload_restarts_a_server_that_exited(
    registry: ToolRegistry, manager: MCPManager, ctx: ToolContext, tools_file: Path
) -> None:
    tools_file.write_text(json.dumps(["add", "crash"]))
    manager.reload()
    crashed = registry.dispatch("mcp_test_crash", {}, ctx)
    assert crashed.is_error and "mcp_test_crash failed" in crashed.content
    after = registry.dispatch("mcp_test_add", {"a": 1, "b": 1}, ctx)
    assert after.is_error and "reloading the MCP servers restarts it" in after.content
    manager.reload()
    assert registry.dispatch("mcp_test_add", {"a": 1, "b": 1}, ctx).content == "2"


def test_two_servers_with_the_same_tools_do_not_clash(
    registry: ToolRegistry, tools_file: Path, ctx: ToolContext
) -> None:
    with MCPManager(
        registry=registry,
        servers=[server_config("one", tools_file), server_config("two", tools_file)],
    ):
        assert {"mcp-one", "mcp-two"} <= registry.toolsets()
        assert registry.dispatch("mcp_two_add", {"a": 1, "b": 1}, ctx).content == "2"
    assert registry.toolsets() == {"memory", "process", "terminal", "todo"}


def test_close_is_clean_and_idempotent(
    registry: ToolRegistry, tools_file: Path, ctx: ToolContext
) -> None:
    threads_before = set(threading.enumerate())
    manager = MCPManager(registry=registry, servers=[server_config("test", tools_file)])
    manager.start()
    generation = registry.generation
    manager.close()
    manager.close()
    assert registry.generation > generation  # its tools were deregistered
    assert "mcp-test" not in registry.toolsets()
    assert not [
        t for t in set(threading.enumerate()) - threads_before if t.name == "mcp-event-loop"
    ]
    with pytest.raises(ToolError, match="call start"):
        manager.reload()
    with pytest.raises(ToolError, match="not connected"):
        manager.call("test", "add", {"a": 1, "b": 2})


def test_a_server_that_cannot_start_names_itself_and_its_command(registry: ToolRegistry) -> None:
    manager = MCPManager(
        registry=registry,
        servers=[MCPServerConfig("ghost", "/no/such/mcp-server", ("--flag",))],
    )
    with pytest.raises(ToolError) as info:
        manager.start()
    manager.close()
    message = str(info.value)
    assert "MCP server 'ghost' (command: /no/such/mcp-server --flag)" in message
    assert "command not found" in message and "mcp_servers.ghost" in message


def test_a_server_that_dies_at_start_shows_its_stderr(
    registry: ToolRegistry, tools_file: Path, ctx: ToolContext
) -> None:
    crashing = MCPServerConfig(
        "crashing", sys.executable, ("-c", "import sys; sys.exit('missing API token')")
    )
    manager = MCPManager(registry=registry, servers=[crashing, server_config("ok", tools_file)])
    with pytest.raises(ToolError) as info:
        manager.start()
    try:
        assert "MCP server 'crashing'" in str(info.value)
        assert "missing API token" in str(info.value)
        # The healthy server still came up.
        assert registry.dispatch("mcp_ok_add", {"a": 1, "b": 2}, ctx).content == "3"
    finally:
        manager.close()


def test_servers_come_from_the_config_section(
    registry: ToolRegistry, tools_file: Path, ctx: ToolContext
) -> None:
    config = {
        "mcp_servers": {
            "files": {
                "command": sys.executable,
                "args": [str(SERVER_SCRIPT)],
                "env": {"MCP_TEST_TOOLS_FILE": str(tools_file)},
            }
        }
    }
    with MCPManager(registry=registry, servers=parse_mcp_servers(config), call_timeout=10.0):
        assert registry.dispatch("mcp_files_echo", {"text": "ok"}, ctx).content == "ok"
