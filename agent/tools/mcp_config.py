"""MCP server configuration: :class:`MCPServerConfig` and the ``mcp_servers`` config section.

The section maps a server name to how to start it over stdio::

    mcp_servers:
      files:
        command: python
        args: [files_server.py]
        env: {FILES_ROOT: /srv/files}

Every error names the offending key and says how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import ConfigError

SECTION = "mcp_servers"
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_KNOWN_KEYS = ("args", "command", "enabled", "env")
_EXAMPLE = "e.g. mcp_servers: {files: {command: python, args: [server.py]}}"


@dataclass(frozen=True)
class MCPServerConfig:
    """How to start one MCP server over stdio.

    Attributes:
        name: the server's name; its tools go to toolset ``mcp-<name>``.
        command: the executable to run.
        args: its command-line arguments.
        env: extra environment variables for it (merged over a minimal safe
            environment, so the worker's own secrets are not passed on).
    """

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SERVER_NAME.match(self.name):
            raise ConfigError(
                f"{SECTION}: server name {self.name!r} is invalid: use 1-32 letters, digits, "
                "'_' or '-'"
            )
        if not isinstance(self.command, str) or not self.command.strip():
            raise ConfigError(
                f"{SECTION}.{self.name}.command must be a non-empty string (the executable to "
                f"run), got {self.command!r}"
            )
        object.__setattr__(self, "args", tuple(self.args))
        if self.env is not None:
            object.__setattr__(self, "env", dict(self.env))

    @property
    def toolset(self) -> str:
        """The toolset this server's tools are registered in."""
        return f"mcp-{self.name}"


def _parse_args(name: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or not all(isinstance(arg, str) for arg in raw):
        raise ConfigError(
            f"{SECTION}.{name}.args must be a list of strings, got {raw!r}; "
            f"write it as a list, e.g. args: [{raw!r}]"
            if isinstance(raw, str)
            else f"{SECTION}.{name}.args must be a list of strings, got {raw!r}"
        )
    return tuple(raw)


def _parse_env(name: str, raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{SECTION}.{name}.env must be a mapping of variable name to string value, got {raw!r}"
        )
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigError(f"{SECTION}.{name}.env: {key!r} is not a valid variable name")
        if not isinstance(value, str):
            raise ConfigError(
                f"{SECTION}.{name}.env.{key} must be a string, got {value!r}; quote it"
            )
        env[key] = value
    return env


def _parse_server(name: Any, entry: Any) -> MCPServerConfig | None:
    if not isinstance(name, str) or not _SERVER_NAME.match(name):
        raise ConfigError(
            f"{SECTION}: server name {name!r} is invalid: use 1-32 letters, digits, '_' or '-'"
        )
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{SECTION}.{name} must be a mapping with 'command' (and optional 'args', 'env'), "
            f"got {entry!r}; {_EXAMPLE}"
        )
    for key in entry:
        if key not in _KNOWN_KEYS:
            hint = "; only stdio servers (command + args) are supported" if key == "url" else ""
            raise ConfigError(
                f"{SECTION}.{name}.{key} is not a known setting (known: "
                f"{', '.join(_KNOWN_KEYS)}){hint}"
            )
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{SECTION}.{name}.enabled must be true or false, got {enabled!r}")
    if "command" not in entry:
        raise ConfigError(f"{SECTION}.{name}.command is missing: set the executable to run")
    command = entry["command"]
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(
            f"{SECTION}.{name}.command must be a non-empty string (the executable to run), "
            f"got {command!r}"
        )
    if not enabled:
        return None
    return MCPServerConfig(
        name=name,
        command=command,
        args=_parse_args(name, entry.get("args")),
        env=_parse_env(name, entry.get("env")),
    )


def parse_mcp_servers(config: Mapping[str, Any] | None) -> list[MCPServerConfig]:
    """Read the ``mcp_servers`` section of a config into server configs, sorted by name.

    A missing config or section gives no servers; ``enabled: false`` skips one.

    Raises:
        ConfigError: the section or an entry is malformed (the message names
            the key and the fix).
    """
    if config is None:
        return []
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {type(config).__name__}")
    section = config.get(SECTION)
    if section is None:
        return []
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"{SECTION} must be a mapping of server name to settings, got {section!r}; {_EXAMPLE}"
        )
    servers = [_parse_server(name, entry) for name, entry in section.items()]
    return sorted((server for server in servers if server is not None), key=lambda s: s.name)


__all__ = ["MCPServerConfig", "parse_mcp_servers"]
