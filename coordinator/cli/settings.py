"""Settings of a command-line invocation: the flags of each setting, and their resolution.

Every subcommand that talks to Redis calls :func:`add_settings_options` with
the settings it understands; each becomes a flag whose help shows its default
and its environment variable. :func:`settings_from_args` merges flags,
environment and settings file (:func:`cluster.settings_sources.load_settings`)
and keeps the result on ``args`` so the error handler can name the Redis URL.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from cluster.errors import ConfigError
from cluster.settings import SETTING_HELP, ClusterSettings, read_url_file, redact_url
from cluster.settings_sources import (
    SETTINGS_FILE_ENV,
    default_of,
    env_name,
    flag_name,
    load_settings_with_origins,
)

__all__ = [
    "HelpFormatter",
    "CONNECTION_SETTINGS",
    "WORKER_SETTINGS",
    "add_settings_options",
    "settings_from_args",
]

CONNECTION_SETTINGS = ("redis_url", "namespace", "log_level")
"""What every command that talks to a cluster accepts."""

WORKER_SETTINGS = (
    *CONNECTION_SETTINGS,
    "heartbeat_interval",
    "heartbeat_ttl",
    "lease_ttl",
    "turn_timeout",
    "drain_timeout",
    "model_call_deadline",
    "concurrency",
    "cache_size",
    "idle_ttl",
    "sweep_interval",
    "metrics_port",
    "metrics_host",
    "mcp_from_config",
    "endpoints",
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help text already does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _flag_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered in ("1", "true", "yes", "on")


# endpoints (a tuple once parsed) is given on the command line as its YAML text.
_TYPES: dict[type, Any] = {int: int, float: float, str: str, bool: _flag_bool, tuple: str}


def add_settings_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """Add ``--settings``, ``--redis-url-file`` and one flag per setting in ``names``."""
    group = parser.add_argument_group(
        "settings",
        f"flags win over AGENT_CLUSTER_* variables, which win over --settings FILE "
        f"(or {SETTINGS_FILE_ENV}); see docs/settings.md",
    )
    group.add_argument(
        "--settings",
        metavar="FILE",
        default=None,
        help=f"YAML settings file (env {SETTINGS_FILE_ENV})",
    )
    for name in names:
        default = default_of(name)
        shown = redact_url(default) if name == "redis_url" else default
        if isinstance(default, tuple):
            shown = "none: the built-in endpoints only"
        help_text = f"{SETTING_HELP[name]} (env {env_name(name)}; default {shown})"
        group.add_argument(
            flag_name(name),
            dest=f"setting_{name}",
            type=_TYPES[type(default)],
            default=None,
            metavar=name.upper() if name != "redis_url" else "URL",
            help=help_text.replace("%", "%%"),
        )
        if name == "redis_url":
            group.add_argument(
                "--redis-url-file",
                default=None,
                metavar="PATH",
                help="read the Redis URL (with its password) from this file "
                "(env AGENT_CLUSTER_REDIS_URL_FILE)",
            )


def settings_from_args(args: argparse.Namespace) -> ClusterSettings:
    """Resolve the settings of this invocation (flags > environment > settings file > defaults).

    A password given with ``--redis-url`` is visible to every local user in
    ``ps``, which is warned about.

    Raises:
        ConfigError: a bad value (naming where it came from), or both
            ``--redis-url`` and ``--redis-url-file``.
    """
    flags = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_")
    }
    url_file = getattr(args, "redis_url_file", None)
    if url_file is not None:
        if flags.get("redis_url") is not None:
            raise ConfigError("give either --redis-url or --redis-url-file, not both")
        flags["redis_url"] = read_url_file(url_file)
    elif (
        flags.get("redis_url") is not None and redact_url(flags["redis_url"]) != flags["redis_url"]
    ):
        logging.getLogger("coordinator.cli").warning(
            "--redis-url carries a password that every local user can read in the process "
            "list; use AGENT_CLUSTER_REDIS_URL or --redis-url-file instead"
        )
    settings, origins = load_settings_with_origins(
        flags, settings_file=getattr(args, "settings", None)
    )
    args.resolved_settings = settings
    args.settings_origins = origins
    return settings


def configure_logging(level: str) -> None:
    """Log at ``level`` to stderr; the HTTP client libraries only from WARNING up.

    httpx logs every request at INFO: one line per model call would cost a
    busy worker more CPU than the call itself and drown what matters.
    """
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
