"""The cluster config document: its schema, and validation with YAML line numbers.

``agent-cluster config push FILE`` runs :func:`parse_config` on the file's text
before anything touches Redis. The schema accepts exactly the keys the product
reads (``worker/profile.py``, ``worker/signature.py``,
``agent/tools/mcp_config.py``); an unknown key, a wrong type or a value out of
range is refused with one line naming the key path, what is expected and the
line of the YAML document, e.g.::

    agent.max_iterations must be a whole number in [1, 1000], got 'many' (cluster.yaml line 12)

An empty document is refused (it would remove every key). The schema is a
tree of small, pure node types (:class:`Section`, :class:`Table`,
:class:`Scalar`, :class:`ListOf`, :class:`Refused`); :data:`CONFIG_SCHEMA` is
the whole document and :func:`schema_lines` renders it as documentation.
Everything here is pure: no Redis, no environment, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from cluster.config_secrets import check_secrets
from cluster.errors import ConfigError
from cluster.schema_nodes import (
    ListOf,
    Located,
    Node,
    Refused,
    Scalar,
    Section,
    Table,
    describe,
)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "CONFIG_SCHEMA",
    "DEFAULT_COMPRESSION_TARGET",
    "DEFAULT_COMPRESSION_THRESHOLD",
    "DEFAULT_PROTECT_LAST_N",
    "ListOf",
    "Refused",
    "Scalar",
    "Section",
    "Table",
    "parse_config",
    "schema_lines",
    "validate_config",
]

_TOOLSET = Scalar(
    "str",
    "a toolset name",
    pattern=re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
    pattern_doc="a toolset name",
)
_BUSTS = " Editing it rebuilds every cached agent."

_ENDPOINT = Scalar(
    "str",
    "",
    pattern=re.compile(r"^[A-Za-z0-9_-]{1,32}$"),
    pattern_doc="an endpoint name such as openai",
)
_ENDPOINTS_ARE_WORKER_SIDE = (
    "endpoints (provider, URL, key variable) are declared in each worker's settings "
    "(endpoints, docs/settings.md), never pushed; name one with model.endpoint"
)
DEFAULT_COMPRESSION_THRESHOLD = 0.75
DEFAULT_COMPRESSION_TARGET = 0.4
DEFAULT_PROTECT_LAST_N = 2
_NOT_SUPPORTED = "not supported yet (the agent does not act on it); remove it from the config"

CONFIG_SCHEMA = Section(
    "The cluster config document, read by every worker.",
    {
        "model": Section(
            "The model every session talks to.",
            {
                "default": Scalar(
                    "str",
                    "Model name sent to the provider (e.g. gpt-4.1, claude-sonnet-4-5)." + _BUSTS,
                ),
                "endpoint": Scalar(
                    "str",
                    "Which provider endpoint, by name: one the workers declare in their "
                    "settings (endpoints), or a built-in one: offline (the default: a "
                    "deterministic echo, no network), openai, anthropic, simulator, "
                    "simulator-anthropic. The endpoint fixes the wire format, the URL and "
                    "the key sent." + _BUSTS,
                    pattern=_ENDPOINT.pattern,
                    pattern_doc=_ENDPOINT.pattern_doc,
                ),
                "provider": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                "base_url": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                "api_key_env": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                "api_mode": Scalar(
                    "str",
                    "Must fit the endpoint's provider (chat_completions, anthropic_messages, "
                    "offline); null picks it." + _BUSTS,
                    choices=("chat_completions", "anthropic_messages", "offline"),
                    nullable=True,
                ),
                "context_length": Scalar(
                    "int",
                    "The model's context window in tokens: what compression measures the "
                    "prompt against (needed by compression.enabled)." + _BUSTS,
                    low=1,
                    nullable=True,
                ),
                "max_tokens": Scalar(
                    "int",
                    "Most output tokens per model call, sent with every request (openai: "
                    "max_completion_tokens; anthropic: max_tokens); null: 1024." + _BUSTS,
                    low=1,
                    nullable=True,
                ),
                "fallback": Section(
                    "A second model used for the rest of a turn when the primary stays "
                    "unavailable through its retries; the session's agent is then rebuilt, "
                    "so its next turn tries the primary again." + _BUSTS,
                    {
                        "default": Scalar("str", "Fallback model name."),
                        "endpoint": Scalar(
                            "str",
                            "Fallback endpoint, by name (as model.endpoint); default: "
                            "model.endpoint.",
                            pattern=_ENDPOINT.pattern,
                            pattern_doc=_ENDPOINT.pattern_doc,
                        ),
                        "provider": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                        "base_url": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                        "api_key_env": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
                    },
                ),
            },
        ),
        "providers": Refused(_ENDPOINTS_ARE_WORKER_SIDE),
        "agent": Section(
            "How each agent runs.",
            {
                "toolsets": ListOf(
                    _TOOLSET,
                    "Enabled toolsets: terminal, process, todo, memory, mcp-<server>. Default: "
                    "terminal, process, todo, memory." + _BUSTS,
                ),
                "disabled_toolsets": ListOf(
                    _TOOLSET, "Toolsets removed from agent.toolsets." + _BUSTS, nullable=True
                ),
                "reasoning_effort": Scalar(
                    "str",
                    "Default reasoning effort of every turn (a message's own `reasoning` "
                    "overrides it for that turn). Changing it clears every cached agent.",
                    choices=("low", "medium", "high"),
                    nullable=True,
                ),
                "max_iterations": Scalar(
                    "int",
                    "Model calls per turn (the tool loop's bound). Default 10.",
                    low=1,
                    high=1000,
                ),
                "ephemeral_system_prompt": Scalar(
                    "str", "Extra system prompt text for every session." + _BUSTS, nullable=True
                ),
            },
        ),
        "compression": Section(
            "Context compression of long sessions: when the next prompt passes threshold x "
            "model.context_length tokens, the older turns are summarised by a model call and "
            "the session continues on the summary and its last turns (the frozen system "
            "prompt untouched, so the provider's prompt cache keeps hitting)." + _BUSTS,
            {
                "enabled": Scalar("bool", "Compress long sessions (default false)."),
                "threshold": Scalar(
                    "number",
                    "Share of model.context_length past which the next prompt is compressed "
                    f"first. Default {DEFAULT_COMPRESSION_THRESHOLD:g}.",
                    low=0,
                    high=1,
                    low_open=True,
                ),
                "target_ratio": Scalar(
                    "number",
                    "Share of model.context_length a compressed prompt aims at (the summary's "
                    "budget is what the kept turns leave of it); below threshold. Default "
                    f"{DEFAULT_COMPRESSION_TARGET:g}.",
                    low=0,
                    high=1,
                    low_open=True,
                ),
                "protect_last_n": Scalar(
                    "int",
                    "The last turns kept verbatim (never summarised). Default "
                    f"{DEFAULT_PROTECT_LAST_N}.",
                    low=0,
                    high=1000,
                ),
            },
        ),
        "memory": Refused(_NOT_SUPPORTED),
        "mcp_servers": Table(
            Section(
                "One MCP server started over stdio by every worker.",
                {
                    "command": Scalar(
                        "str",
                        "Executable to run.",
                        pattern=re.compile(r"\S"),
                        pattern_doc="non-empty",
                    ),
                    "args": ListOf(Scalar("str", "an argument"), "Its arguments.", nullable=True),
                    "env": Table(
                        Section("", {}),  # never used: values are checked by _ENV_VALUES below
                        'Extra environment; reference worker secrets as "${NAME}".',
                    ),
                    "enabled": Scalar("bool", "false skips the server."),
                },
                required=("command",),
            ),
            "MCP servers by name; their tools form toolset mcp-<name>. `agent-cluster mcp reload` "
            "re-discovers them.",
        ),
    },
)


def _check_mcp_env(document: Mapping[str, Any], where: Located) -> None:
    """``mcp_servers.X.env`` maps variable names to strings (not to sections)."""
    servers = document.get("mcp_servers")
    if not isinstance(servers, Mapping):
        return
    for name, entry in servers.items():
        env = entry.get("env") if isinstance(entry, Mapping) else None
        if env is None:
            continue
        path = f"mcp_servers.{name}.env"
        if not isinstance(env, Mapping):
            raise ConfigError(
                f"{path} must be a mapping of variable name to string{where.at(path)}"
            )
        for key, value in env.items():
            if not isinstance(key, str) or not ENV_NAME.match(key):
                raise ConfigError(f"{path}: {key!r} is not a valid variable name{where.at(path)}")
            if not isinstance(value, str):
                raise ConfigError(
                    f"{path}.{key} must be a string, got {describe(value)}; quote it"
                    f"{where.at(f'{path}.{key}')}"
                )


def _check_compression(document: Mapping[str, Any], where: Located) -> None:
    """Compression needs a context window, and a target below its threshold."""
    section = document.get("compression")
    if not isinstance(section, Mapping) or not section.get("enabled"):
        return
    model = document.get("model")
    if not isinstance(model, Mapping) or model.get("context_length") is None:
        raise ConfigError(
            "compression.enabled needs model.context_length (the model's context window "
            f"in tokens), which is not set{where.at('compression.enabled')}"
        )
    threshold = section.get("threshold", DEFAULT_COMPRESSION_THRESHOLD)
    target = section.get("target_ratio", DEFAULT_COMPRESSION_TARGET)
    if target >= threshold:
        raise ConfigError(
            f"compression.target_ratio ({target:g}) must be below compression.threshold "
            f"({threshold:g}): a compressed prompt past the threshold would be compressed "
            f"again at every turn{where.at('compression.target_ratio')}"
        )


def validate_config(
    document: Any, *, source: str = "config", lines: Mapping[str, int] | None = None
) -> None:
    """Check a config document against :data:`CONFIG_SCHEMA`.

    Args:
        document: The parsed document.
        source: The file name shown in errors.
        lines: Key path -> line number (from :func:`parse_config`).

    Raises:
        ConfigError: the first problem, naming the key path (and line, if known).
    """
    where = Located(source, lines or {})
    servers = document.get("mcp_servers") if isinstance(document, Mapping) else None
    if isinstance(servers, Mapping):
        # env is a free-form mapping: check it apart, then hide it from the section check.
        _check_mcp_env(document, where)
        document = {
            **document,
            "mcp_servers": {
                name: {k: v for k, v in entry.items() if k != "env"}
                if isinstance(entry, Mapping)
                else entry
                for name, entry in servers.items()
            },
        }
    CONFIG_SCHEMA.check(document, "", where)
    _check_compression(document, where)


def _node_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                raise ConfigError(
                    f"{child} is given twice (line {key_node.start_mark.line + 1}); keep one"
                )
            seen.add(key)
            out[child] = key_node.start_mark.line + 1
            _node_lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, f"{path}[{index}]", out)


def parse_config(text: str, *, source: str = "config") -> dict[str, Any]:
    """Parse and validate a YAML (or JSON) config document.

    Args:
        text: The document.
        source: Its file name, shown in errors.

    Returns:
        The document as plain data.

    Raises:
        ConfigError: not YAML, empty, not a mapping, holding a secret
            (:func:`cluster.config_secrets.check_secrets`), or failing the
            schema (one line with the key path and the YAML line number).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{line} is not valid YAML: {problem}") from None
    if document is None or document == {}:
        raise ConfigError(
            f"{source} is empty: publishing it would remove every key (the cluster would "
            "fall back to the offline model); write the keys you want, or roll back with "
            "`agent-cluster config rollback N`"
        )
    lines: dict[str, int] = {}
    if node is not None:
        _node_lines(node, "", lines)
    # First: a secret under a wrong key must be refused as a secret.
    check_secrets(document, source=source, lines=lines)
    validate_config(document, source=source, lines=lines)
    assert isinstance(document, dict)
    return document


def _walk(node: Node, path: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, Section):
        for key, child in node.keys.items():
            yield from _walk(child, f"{path}.{key}" if path else key)
    elif isinstance(node, Table):
        if node.entry.keys:
            yield (path, "mapping", node.doc)
            yield from _walk(node.entry, f"{path}.<name>")
        else:
            yield (path, "mapping of NAME to string", node.doc)
    elif isinstance(node, Refused):
        yield (path, "refused", node.reason)
    elif isinstance(node, ListOf):
        yield (
            path,
            f"list of {node.item.expected()}" + (" or null" if node.nullable else ""),
            node.doc,
        )
    else:
        yield (path, node.expected(), node.doc)


def schema_lines() -> list[tuple[str, str, str]]:
    """Every key of the schema as ``(path, expected value, meaning)``, in document order."""
    return list(_walk(CONFIG_SCHEMA, ""))
