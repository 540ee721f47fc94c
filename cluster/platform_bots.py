"""Which chat platform bots a gateway serves: parsed from two settings, validated.

``telegram_bots`` is ``NAME=MODE[/TENANT]`` comma-separated (``MODE``:
``poll`` or ``webhook``), ``slack_apps`` is ``NAME[=TENANT]`` comma-separated.
A bot's sessions belong to its tenant (``default`` when none is given), so a
tenant's limits, usage and session isolation apply to chats as they do to its
API keys. A bot name (``cluster.keys.BOT_NAME_RE``) names the bot's Redis keys
and its secrets' variables; the secrets themselves (bot token, webhook secret,
Slack signing secret) are never part of a setting: the gateway reads them
from its environment (``coordinator.platforms.secrets``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.errors import ConfigError
from cluster.keys import BOT_NAME_RE, TENANT_NAME_RE

__all__ = ["GROUP_SESSIONS", "TELEGRAM_MODES", "BotSpec", "parse_slack_apps", "parse_telegram_bots"]

TELEGRAM_MODES = ("poll", "webhook")
"""How a Telegram bot receives updates: one cluster-wide long-poller, or webhooks."""

GROUP_SESSIONS = ("chat", "user")
"""Sessions in a group chat: one per chat, or one per user in the chat."""


@dataclass(frozen=True)
class BotSpec:
    """One bot of a platform.

    Attributes:
        platform: ``telegram`` or ``slack``.
        name: The bot's name in keys, URLs and secret variables.
        mode: ``poll`` or ``webhook`` (Telegram); ``events`` (Slack).
        tenant: The tenant the bot's sessions belong to.
    """

    platform: str
    name: str
    mode: str
    tenant: str


def _check_name(setting: str, name: str, entry: str) -> str:
    if not BOT_NAME_RE.match(name):
        raise ConfigError(
            f"{setting}: bot name must be 1-32 characters of lowercase letters, digits, '_-', "
            f"got {name!r} in {entry!r}"
        )
    return name


def _check_tenant(setting: str, tenant: str, entry: str) -> str:
    if not TENANT_NAME_RE.match(tenant):
        raise ConfigError(
            f"{setting}: tenant must be 1-32 characters of lowercase letters, digits, '_-', "
            f"got {tenant!r} in {entry!r}"
        )
    return tenant


def _entries(setting: str, text: str) -> list[str]:
    if not isinstance(text, str):
        raise ConfigError(f"{setting} must be a string, got {text!r}")
    return [part.strip() for part in text.split(",") if part.strip()]


def _unique(setting: str, specs: list[BotSpec]) -> tuple[BotSpec, ...]:
    names = [spec.name for spec in specs]
    doubles = sorted({name for name in names if names.count(name) > 1})
    if doubles:
        raise ConfigError(f"{setting}: bot {doubles[0]!r} is listed twice; give each bot one entry")
    return tuple(specs)


def parse_telegram_bots(text: str) -> tuple[BotSpec, ...]:
    """Parse ``telegram_bots`` (e.g. ``support=poll,sales=webhook/acme``).

    Raises:
        ConfigError: an entry is malformed, a name or tenant invalid, a mode unknown.
    """
    specs = []
    for entry in _entries("telegram_bots", text):
        name, sep, rest = entry.partition("=")
        mode, _, tenant = rest.partition("/")
        if not sep or mode not in TELEGRAM_MODES:
            raise ConfigError(
                f"telegram_bots: expected NAME=poll or NAME=webhook (optionally /TENANT), "
                f"got {entry!r}"
            )
        specs.append(
            BotSpec(
                platform="telegram",
                name=_check_name("telegram_bots", name.strip(), entry),
                mode=mode,
                tenant=_check_tenant("telegram_bots", tenant or "default", entry),
            )
        )
    return _unique("telegram_bots", specs)


def parse_slack_apps(text: str) -> tuple[BotSpec, ...]:
    """Parse ``slack_apps`` (e.g. ``helpdesk,ops=acme``).

    Raises:
        ConfigError: a name or tenant is invalid.
    """
    specs = []
    for entry in _entries("slack_apps", text):
        name, _, tenant = entry.partition("=")
        specs.append(
            BotSpec(
                platform="slack",
                name=_check_name("slack_apps", name.strip(), entry),
                mode="events",
                tenant=_check_tenant("slack_apps", tenant.strip() or "default", entry),
            )
        )
    return _unique("slack_apps", specs)
