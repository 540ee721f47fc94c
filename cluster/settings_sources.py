"""Where settings come from: flags, then ``AGENT_CLUSTER_*`` variables, then a settings file.

:func:`load_settings` merges the three sources (a flag wins over a variable,
which wins over the file, which wins over the default of
:class:`~cluster.settings.ClusterSettings`) and names the source of a bad
value in its error (``--lease-ttl``, ``AGENT_CLUSTER_LEASE_TTL``, or
``settings.yaml: lease_ttl``). The settings file is YAML, field names as keys::

    redis_url: redis://redis.internal:6379/0
    namespace: prod
    cache_size: 256

It is named by ``--settings FILE`` or ``AGENT_CLUSTER_SETTINGS_FILE``.
:func:`settings_markdown` renders the table of ``docs/settings.md``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from cluster.errors import ConfigError
from cluster.settings import (
    ENV_PREFIX,
    SETTING_HELP,
    URL_FILE_ENV,
    ClusterSettings,
    read_url_file,
)

__all__ = [
    "SETTINGS_FILE_ENV",
    "env_name",
    "flag_name",
    "load_settings",
    "load_settings_with_origins",
    "read_settings_file",
    "setting_names",
    "settings_markdown",
]

SETTINGS_FILE_ENV = "AGENT_CLUSTER_SETTINGS_FILE"


def setting_names() -> list[str]:
    """Every setting, in definition order."""
    return [f.name for f in dataclasses.fields(ClusterSettings)]


def flag_name(name: str) -> str:
    """``lease_ttl`` -> ``--lease-ttl``."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """``lease_ttl`` -> ``AGENT_CLUSTER_LEASE_TTL``."""
    return ENV_PREFIX + name.upper()


def default_of(name: str) -> Any:
    """The default value of setting ``name``."""
    for f in dataclasses.fields(ClusterSettings):
        if f.name == name:
            return f.default
    raise KeyError(name)


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a settings file (a YAML mapping of setting names to values).

    Raises:
        ConfigError: unreadable, not YAML, not a mapping, or an unknown setting
            (the message names the file, the key and its line).
    """
    shown = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {shown!r}: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"settings file {shown}{line} is not valid YAML") from None
    if values is None:
        return {}
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"settings file {shown} must be a mapping of setting names to values")
    known = set(setting_names())
    for key_node, _ in node.value:
        if key_node.value not in known:
            raise ConfigError(
                f"settings file {shown} line {key_node.start_mark.line + 1}: unknown setting "
                f"{key_node.value!r}; known: {', '.join(setting_names())}"
            )
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    settings_file: str | None = None,
) -> ClusterSettings:
    """Merge flags, environment and settings file into one validated :class:`ClusterSettings`.

    Args:
        flags: Setting name -> value given on the command line (``None`` values
            mean "not given").
        environ: The environment (``os.environ`` when omitted).
        settings_file: A settings file; when ``None``, ``AGENT_CLUSTER_SETTINGS_FILE``.

    Raises:
        ConfigError: a bad value, naming the flag, variable or file key it came from.
    """
    return load_settings_with_origins(flags, environ=environ, settings_file=settings_file)[0]


def load_settings_with_origins(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    settings_file: str | None = None,
) -> tuple[ClusterSettings, dict[str, str]]:
    """As :func:`load_settings`, plus where each value came from (``"default"`` when nowhere).

    Returns:
        The settings and setting name -> its source: the flag, the variable,
        ``FILE: name``, or ``default``.
    """
    env = os.environ if environ is None else environ
    path = settings_file or env.get(SETTINGS_FILE_ENV) or None
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path:
        for name, value in read_settings_file(path).items():
            values[name], origin[name] = value, f"{path}: {name}"
    if "redis_url" not in values and env.get(URL_FILE_ENV):
        values["redis_url"], origin["redis_url"] = read_url_file(env[URL_FILE_ENV]), URL_FILE_ENV
    for name in setting_names():
        if env_name(name) in env:
            values[name], origin[name] = env[env_name(name)], env_name(name)
    for name, value in (flags or {}).items():
        if value is not None:
            values[name], origin[name] = value, flag_name(name)
    settings = ClusterSettings.from_values(values, key_name=lambda name: origin.get(name, name))
    return settings, {name: origin.get(name, "default") for name in setting_names()}


def _shown_default(name: str) -> str:
    value = default_of(name)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return "none (the built-ins)"
    return str(value)


def settings_markdown() -> str:
    """The settings table of ``docs/settings.md`` (``agent-cluster settings --markdown``)."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `agent-cluster settings --markdown > docs/settings.md`; "
        "tests/unit/cluster/test_settings_sources.py checks it is up to date. -->",
        "",
        "Every process setting has one definition (`cluster/settings.py`) with its default.",
        "A value comes from, in this order (the first one found wins): the command-line flag,",
        f"the environment variable, the settings file (`--settings FILE` or `{SETTINGS_FILE_ENV}`,",
        "YAML with the setting names as keys), the default. `agent-cluster settings` prints the",
        "values in effect and where each came from. The Redis URL may also come from a file",
        f"(`--redis-url-file PATH` or `{URL_FILE_ENV}`), which keeps its password out of `ps`.",
        "",
        "| setting | flag | environment variable | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name in setting_names():
        lines.append(
            f"| `{name}` | `{flag_name(name)}` | `{env_name(name)}` | `{_shown_default(name)}` | "
            f"{SETTING_HELP[name]} |"
        )
    lines += [
        "",
        "The tool sandbox reads its own variables (`AGENT_CLUSTER_SANDBOX*`, `AGENT_CLUSTER_HOME`)",
        "from each worker's environment only, never from Redis; they are listed in the README's",
        "Security section. Provider api keys come from each worker's environment too: from the",
        "variable its endpoint declares (`endpoints` above); the cluster config only names the",
        "endpoint (`model.endpoint`).",
        "",
    ]
    return "\n".join(lines)
