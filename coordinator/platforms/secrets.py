"""A bot's secrets, read from the gateway's environment, never logged or stored.

Telegram: ``AGENT_CLUSTER_TELEGRAM_TOKEN_<NAME>`` (the bot token) and, for a
webhook bot, ``AGENT_CLUSTER_TELEGRAM_SECRET_<NAME>`` (the
``secret_token`` given to ``setWebhook``, checked against the
``X-Telegram-Bot-Api-Secret-Token`` header). Slack:
``AGENT_CLUSTER_SLACK_TOKEN_<NAME>`` (the bot token, ``xoxb-...``) and
``AGENT_CLUSTER_SLACK_SIGNING_SECRET_<NAME>``. ``<NAME>`` is the bot's name
upper-cased with ``-`` as ``_``. Each variable may instead name a file with
``_FILE`` appended (a mounted Kubernetes Secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cluster.errors import ConfigError
from cluster.platform_bots import BotSpec

__all__ = ["BotSecrets", "Secret", "read_secrets", "secret_variables"]


class Secret:
    """A secret string whose ``repr``/``str`` never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that sends it to its platform."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class BotSecrets:
    """The secrets of one bot.

    Attributes:
        token: The bot token (Telegram) or bot user token (Slack).
        verifier: The webhook secret token (Telegram webhook bots) or the
            signing secret (Slack); ``None`` for a polling Telegram bot.
    """

    token: Secret
    verifier: Secret | None


def secret_variables(spec: BotSpec) -> tuple[str, str | None]:
    """The variables holding ``spec``'s token and verifier (``None``: it needs none)."""
    suffix = spec.name.upper().replace("-", "_")
    if spec.platform == "telegram":
        secret = f"AGENT_CLUSTER_TELEGRAM_SECRET_{suffix}" if spec.mode == "webhook" else None
        return f"AGENT_CLUSTER_TELEGRAM_TOKEN_{suffix}", secret
    return f"AGENT_CLUSTER_SLACK_TOKEN_{suffix}", f"AGENT_CLUSTER_SLACK_SIGNING_SECRET_{suffix}"


def _read(variable: str, env: Mapping[str, str], spec: BotSpec) -> Secret:
    value = env.get(variable, "")
    path = env.get(variable + "_FILE", "")
    if not value and path:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read(16 * 1024).strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {variable}_FILE {path!r}: {exc.strerror}") from None
    if not value:
        raise ConfigError(
            f"{spec.platform} bot {spec.name!r} has no secret: set {variable} (or {variable}_FILE)"
        )
    return Secret(value)


def read_secrets(spec: BotSpec, environ: Mapping[str, str] | None = None) -> BotSecrets:
    """Read ``spec``'s secrets from ``environ`` (default: the process environment).

    Raises:
        ConfigError: a variable is unset or empty, or its file cannot be read.
    """
    env = os.environ if environ is None else environ
    token_var, verifier_var = secret_variables(spec)
    return BotSecrets(
        token=_read(token_var, env, spec),
        verifier=None if verifier_var is None else _read(verifier_var, env, spec),
    )
