"""parse_mcp_servers: valid sections and error messages that name the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from agent.tools import MCPServerConfig, ToolRegistry, parse_mcp_servers
from agent.tools.mcp import MCPManager
from cluster.errors import ConfigError


def test_reads_servers_sorted_by_name() -> None:
    config = {
        "model": {"name": "x"},
        "mcp_servers": {
            "files": {"command": "python", "args": ["x.py"], "env": {"ROOT": "/srv"}},
            "clock": {"command": "clock-server"},
            "off": {"command": "nope", "enabled": False},
        },
    }
    assert parse_mcp_servers(config) == [
        MCPServerConfig("clock", "clock-server"),
        MCPServerConfig("files", "python", ("x.py",), {"ROOT": "/srv"}),
    ]
    assert parse_mcp_servers(config)[1].toolset == "mcp-files"


@pytest.mark.parametrize("config", [None, {}, {"mcp_servers": None}, {"mcp_servers": {}}])
def test_no_section_means_no_servers(config: Any) -> None:
    assert parse_mcp_servers(config) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (["files"], "mcp_servers must be a mapping of server name to settings"),
        ({"files": "python x.py"}, "mcp_servers.files must be a mapping with 'command'"),
        ({"files": {"args": ["x.py"]}}, "mcp_servers.files.command is missing"),
        ({"files": {"command": ""}}, "mcp_servers.files.command must be a non-empty string"),
        (
            {"files": {"command": "python", "args": "x.py"}},
            "mcp_servers.files.args must be a list of strings, got 'x.py'; write it as a list",
        ),
        ({"files": {"command": "python", "args": [1]}}, "mcp_servers.files.args must be a list"),
        ({"files": {"command": "python", "env": ["A=1"]}}, "mcp_servers.files.env must be a"),
        ({"files": {"command": "python", "env": {"PORT": 80}}}, "env.PORT must be a string"),
        ({"files": {"command": "python", "url": "http://x"}}, "only stdio servers"),
        ({"files": {"command": "python", "colour": "red"}}, "mcp_servers.files.colour is not a"),
        ({"my files": {"command": "python"}}, "server name 'my files' is invalid"),
        ({"files": {"command": "python", "enabled": "yes"}}, "enabled must be true or false"),
    ],
)
def test_bad_sections_raise_config_errors_naming_the_key(section: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mcp_servers({"mcp_servers": section})
    assert message in str(info.value)


def test_server_config_validates_itself() -> None:
    with pytest.raises(ConfigError, match="command must be a non-empty string"):
        MCPServerConfig("files", " ")
    assert MCPServerConfig("files", "python", ["a"]).args == ("a",)  # type: ignore[arg-type]


def test_duplicate_server_names_are_refused() -> None:
    server = MCPServerConfig("files", "python")
    with pytest.raises(ConfigError, match="unique"):
        MCPManager(registry=ToolRegistry(), servers=[server, server])


def test_env_references_are_expanded_from_the_workers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.tools.mcp_connection import expand_env_references

    monkeypatch.setenv("GITHUB_TOKEN", "ghp-from-the-environment")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    assert expand_env_references(
        {"GITHUB_TOKEN": "${GITHUB_TOKEN}", "MIXED": "a-${UNSET_ONE}-b", "PLAIN": "$HOME"}
    ) == {"GITHUB_TOKEN": "ghp-from-the-environment", "MIXED": "a--b", "PLAIN": "$HOME"}
