"""The platforms a gateway serves: their runners for the app's lifetime, and their webhook routes.

``POST /v1/platforms/telegram/{bot}`` takes Telegram's webhook updates (the
``X-Telegram-Bot-Api-Secret-Token`` header must be the bot's secret) and
``POST /v1/platforms/slack/{app}`` Slack's Events API requests (signed with
the app's signing secret; ``url_verification`` answered with its
challenge). Both answer as soon as the message is accepted by the cluster;
503 when it could not be (the platform retries), and a duplicate is answered
200 like the first delivery. :meth:`PlatformHub.running` starts one
:class:`~coordinator.platforms.runner.BotRunner` per bot for the app's
lifetime and gives the bots' leases up at shutdown.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import Update

from cluster.errors import InvalidMessage, RequestRefused
from cluster.platform_bots import BotSpec, parse_slack_apps, parse_telegram_bots
from coordinator.http.body import read_body
from coordinator.http.gateway import Gateway
from coordinator.platforms import slack, telegram
from coordinator.platforms.runner import BotRunner
from coordinator.platforms.secrets import BotSecrets, read_secrets
from coordinator.platforms.store import BotStore

__all__ = ["PlatformHub", "platform_routes"]

log = logging.getLogger("coordinator.platforms")

_MAX_BODY = 1024 * 1024


class _Bot:
    def __init__(self, spec: BotSpec, secrets: BotSecrets, runner: BotRunner) -> None:
        self.spec = spec
        self.secrets = secrets
        self.runner = runner


class PlatformHub:
    """The bots of one gateway (built from ``telegram_bots`` and ``slack_apps``)."""

    def __init__(self, gateway: Gateway, environ: Mapping[str, str] | None = None) -> None:
        """Read every bot's secrets and build its runner (nothing starts yet).

        Raises:
            ConfigError: a bot's secret is missing.
        """
        settings = gateway.settings
        self.gateway = gateway
        self.bots: dict[tuple[str, str], _Bot] = {}
        client = gateway.coordinator.client
        for spec in parse_telegram_bots(settings.telegram_bots):
            secrets = read_secrets(spec, environ)
            store = BotStore(client, gateway.keyspace, platform="telegram", bot=spec.name)
            bot = telegram.make_bot(secrets.token.reveal(), settings.telegram_api_url)
            runner = BotRunner(
                gateway=gateway,
                spec=spec,
                store=store,
                sender=telegram.TelegramSender(bot, store, gateway.run),
                poll=telegram.poll_updates if spec.mode == "poll" else None,
            )
            self.bots[("telegram", spec.name)] = _Bot(spec, secrets, runner)
        for spec in parse_slack_apps(settings.slack_apps):
            secrets = read_secrets(spec, environ)
            store = BotStore(client, gateway.keyspace, platform="slack", bot=spec.name)
            web = slack.slack_client(secrets.token.reveal(), settings.slack_api_url)
            runner = BotRunner(
                gateway=gateway,
                spec=spec,
                store=store,
                sender=slack.SlackSender(web, store, gateway.run),
            )
            self.bots[("slack", spec.name)] = _Bot(spec, secrets, runner)

    def bot(self, platform: str, name: str) -> _Bot:
        """A served bot, or 404."""
        found = self.bots.get((platform, name))
        if found is None:
            raise RequestRefused(
                f"this gateway serves no {platform} bot {name!r}: check telegram_bots / slack_apps",
                status=404,
                kind="not_found",
            )
        return found

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PlatformHub]:
        """Run every bot's runner until the context exits, then release their leases."""
        async with anyio.create_task_group() as group:
            for bot in self.bots.values():
                group.start_soon(bot.runner.run)
            try:
                yield self
            finally:
                for bot in self.bots.values():
                    await bot.runner.release()
                group.cancel_scope.cancel()


def _hub(request: Request) -> PlatformHub:
    hub = getattr(request.app.state, "platforms", None)
    if hub is None:
        raise RequestRefused(
            "this gateway serves no chat platform: set telegram_bots or slack_apps",
            status=404,
            kind="not_found",
        )
    assert isinstance(hub, PlatformHub)
    return hub


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise InvalidMessage("the body is not JSON: send the platform's payload") from None
    if not isinstance(value, dict):
        raise InvalidMessage("the body must be a JSON object: send the platform's payload")
    return value


async def telegram_webhook(request: Request) -> Response:
    """Accept one Telegram update for the bot in the path; 200 once the cluster has it."""
    bot = _hub(request).bot("telegram", request.path_params["bot"])
    expected = bot.secrets.verifier
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    if expected is None or not hmac.compare_digest(given.encode(), expected.reveal().encode()):
        raise RequestRefused(
            "X-Telegram-Bot-Api-Secret-Token is missing or wrong: set the webhook with the "
            "bot's secret_token",
            status=401,
            kind="unauthorized",
        )
    payload = _json(await read_body(request, limit=_MAX_BODY))
    try:
        update = Update.de_json(payload, None)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"not a Telegram update: {exc}") from None
    inbound = telegram.inbound_from_update(update)
    duplicate = False
    if inbound is not None:
        duplicate = not await bot.runner.accept(inbound)
    return JSONResponse({"ok": True, "duplicate": duplicate})


async def slack_events(request: Request) -> Response:
    """Accept one Slack Events API request for the app in the path."""
    bot = _hub(request).bot("slack", request.path_params["app"])
    body = await read_body(request, limit=_MAX_BODY)
    verifier = bot.secrets.verifier
    assert verifier is not None
    slack.check_signature(verifier.reveal(), body, request.headers, now=slack.now())
    payload = _json(body)
    kind = payload.get("type")
    if kind == "url_verification":
        return JSONResponse({"challenge": str(payload.get("challenge", ""))})
    if kind != "event_callback":
        return JSONResponse({"ok": True, "ignored": str(kind)})
    inbound = slack.inbound_from_event(payload)
    duplicate = False
    if inbound is not None:
        duplicate = not await bot.runner.accept(inbound)
    return JSONResponse({"ok": True, "duplicate": duplicate})


def platform_routes() -> list[BaseRoute]:
    """The webhook routes (404 for a bot this gateway does not serve)."""
    return [
        Route("/v1/platforms/telegram/{bot}", telegram_webhook, methods=["POST"]),
        Route("/v1/platforms/slack/{app}", slack_events, methods=["POST"]),
    ]
