"""A Telegram Bot API simulator: the subset a chat gateway uses, with Telegram's failures.

Served at ``/bot<TOKEN>/<method>`` like ``api.telegram.org`` (so
python-telegram-bot works against it with ``base_url``): ``getMe``,
``getUpdates`` (long polling with ``offset`` and ``timeout``),
``sendMessage``, ``editMessageText``, ``deleteWebhook``. As Telegram does:

* a ``getUpdates`` while another one of the same token is waiting ends the
  waiting one with ``409 Conflict: terminated by other getUpdates request``
  (counted in :attr:`TelegramSimulator.conflicts`);
* ``getUpdates(offset=N)`` confirms, and forgets, every update below ``N``;
* :meth:`TelegramSimulator.rate_limit` makes the next sends answer
  ``429 Too Many Requests`` with ``parameters.retry_after``;
* a message sent with ``parse_mode=HTML`` is parsed as Telegram does: its
  length limit counts the visible text, malformed or unsupported markup is
  ``400 Bad Request: can't parse entities``, and the stored text is the
  visible text (as Telegram's ``Message.text``);
* every send and edit is logged with its time (:meth:`TelegramSimulator.calls`),
  so a test can check the pace per chat;
* :meth:`TelegramSimulator.post_webhook` posts an update to a webhook URL with
  the ``X-Telegram-Bot-Api-Secret-Token`` header and retries it until a 2xx,
  and can post it again on purpose (redelivery).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any

from agent.simulator._http import Outcome
from agent.simulator.platform_http import SimulatorThread, parse_params, post_json

__all__ = ["ApiCall", "SentMessage", "TelegramSimulator"]

_LONGEST_POLL = 50.0


@dataclass
class SentMessage:
    """A message the bot sent (its visible text as last edited, and its markup if HTML)."""

    chat_id: int
    message_id: int
    text: str
    thread: int | None = None
    edits: int = 0
    html: str = ""
    sent_at: float = 0.0
    edited_at: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ApiCall:
    """A send or edit the bot made to a chat (accepted or refused)."""

    at: float
    chat_id: int
    method: str
    status: int


_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "tg-spoiler",
        "span",
        "blockquote",
    }
)


class _TelegramHTML(HTMLParser):
    """Telegram's HTML subset: known tags, properly nested; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.visible: list[str] = []
        self.open: list[str] = []
        self.error = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            self.error = f'unsupported start tag "{tag}"'
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.error = f'can\'t find end tag corresponding to start tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.visible.append(data)


_BARE_AMP = re.compile(r"&(?!(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);)")


def _visible(text: str, parse_mode: Any) -> tuple[str, str]:
    """The visible text of a message and what is wrong with its markup (``""``: nothing)."""
    if str(parse_mode or "").upper() != "HTML":
        return text, ""
    if "<" in re.sub(r"</?[a-zA-Z][a-zA-Z-]*(\s[^<>]*)?>", "", text) or _BARE_AMP.search(text):
        return unescape(text), "unescaped < or & outside a tag"
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    if parser.open and not parser.error:
        parser.error = f'can\'t find end tag corresponding to start tag "{parser.open[-1]}"'
    return "".join(parser.visible), parser.error


@dataclass
class _Bot:
    token: str
    bot_id: int
    next_update: int = 1
    updates: list[dict[str, Any]] = field(default_factory=list)
    poll_generation: int = 0


def _error(status: int, description: str, **parameters: Any) -> Outcome:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Outcome(status=status, body=body)


def _ok(result: Any) -> Outcome:
    return Outcome(body={"ok": True, "result": result})


class TelegramSimulator:
    """The simulated Bot API (thread-safe; start with ``with TelegramSimulator() as sim``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.Condition()
        self._bots: dict[str, _Bot] = {}
        self._sent: list[SentMessage] = []
        self._rate_limits: list[int] = []
        self._next_message = 1000
        self._calls: list[ApiCall] = []
        self.conflicts = 0
        """``getUpdates`` calls ended by a newer one of the same token (409)."""
        self.rate_limited = 0
        """Sends answered 429."""
        self.polls = 0
        """``getUpdates`` calls served."""
        self._server: SimulatorThread | None = None

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> TelegramSimulator:
        self._server = SimulatorThread(self, self._host, self._port, "telegram-simulator")
        return self

    def __exit__(self, *_exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            with self._lock:
                self._lock.notify_all()
            server.stop()

    @property
    def url(self) -> str:
        """The server root; python-telegram-bot's ``base_url`` is ``url + "/bot"``."""
        assert self._server is not None, "start the simulator first (with TelegramSimulator())"
        return self._server.url

    # -- the test's side -------------------------------------------------------

    def add_bot(self, token: str) -> None:
        """Accept ``token`` (any other token gets 401)."""
        with self._lock:
            self._bots.setdefault(token, _Bot(token=token, bot_id=7000 + len(self._bots)))

    def make_update(
        self,
        token: str,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        group: bool = False,
        thread: int | None = None,
        queue: bool = True,
    ) -> dict[str, Any]:
        """A user's message to the bot as an update; queued for ``getUpdates`` when ``queue``."""
        with self._lock:
            bot = self._bots[token]
            update_id = bot.next_update
            bot.next_update += 1
            message: dict[str, Any] = {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "supergroup" if group else "private"},
                "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "User"},
                "text": text,
            }
            if thread is not None:
                message["message_thread_id"] = thread
                message["is_topic_message"] = True
            update = {"update_id": update_id, "message": message}
            if queue:
                bot.updates.append(update)
                self._lock.notify_all()
            return update

    def post_webhook(
        self, url: str, update: Mapping[str, Any], *, secret: str, attempts: int = 5
    ) -> int:
        """POST ``update`` to ``url`` as Telegram does, retrying until a 2xx; the last status."""
        body = json.dumps(update).encode()
        status = 0
        for attempt in range(attempts):
            status = post_json(url, body, {"X-Telegram-Bot-Api-Secret-Token": secret})
            if 200 <= status < 300:
                return status
            time.sleep(0.05 * (attempt + 1))
        return status

    def rate_limit(self, count: int, retry_after: int = 1) -> None:
        """Answer the next ``count`` sends (``sendMessage``, ``editMessageText``) with 429."""
        with self._lock:
            self._rate_limits.extend([retry_after] * count)

    def messages(self, chat_id: int) -> list[SentMessage]:
        """What the bot sent to ``chat_id``, in order."""
        with self._lock:
            return [m for m in self._sent if m.chat_id == chat_id]

    def wait_messages(self, chat_id: int, count: int, timeout: float = 30.0) -> list[SentMessage]:
        """Wait until the bot sent ``count`` messages to ``chat_id``; returns them (maybe fewer)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self._sent if m.chat_id == chat_id]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._lock.wait(min(left, 0.2))

    def calls(self, chat_id: int) -> list[ApiCall]:
        """Every ``sendMessage`` and ``editMessageText`` to ``chat_id``, in order, with its time."""
        with self._lock:
            return [c for c in self._calls if c.chat_id == chat_id]

    def pending_updates(self, token: str) -> int:
        """Updates not confirmed yet by a poller."""
        with self._lock:
            return len(self._bots[token].updates)

    # -- the API ---------------------------------------------------------------

    def route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Serve one Bot API call."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return _error(404, "Not Found")
        token, call = parts[0][3:], parts[1]
        try:
            params = parse_params(headers, body)
        except ValueError:
            return _error(400, "Bad Request: can't parse the request body")
        with self._lock:
            bot = self._bots.get(token)
        if bot is None:
            return _error(401, "Unauthorized")
        handler: Callable[[_Bot, dict[str, Any]], Outcome] | None = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message,
            "deleteWebhook": self._delete_webhook,
        }.get(call)
        if handler is None:
            return _error(404, f"Not Found: method {call} is not simulated")
        return handler(bot, params)

    def _delete_webhook(self, _bot: _Bot, _params: dict[str, Any]) -> Outcome:
        return _ok(True)

    def _get_me(self, bot: _Bot, _params: dict[str, Any]) -> Outcome:
        return _ok({"id": bot.bot_id, "is_bot": True, "first_name": "Sim", "username": "sim_bot"})

    def _get_updates(self, bot: _Bot, params: dict[str, Any]) -> Outcome:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), _LONGEST_POLL)
        deadline = time.monotonic() + timeout
        with self._lock:
            self.polls += 1
            bot.poll_generation += 1
            mine = bot.poll_generation
            self._lock.notify_all()  # a waiting getUpdates of this token ends with 409
            if offset:
                bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
            while True:
                if bot.poll_generation != mine:
                    self.conflicts += 1
                    return _error(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                if bot.updates:
                    return _ok(list(bot.updates[:100]))
                left = deadline - time.monotonic()
                if left <= 0 or self._server is None or self._server.stopping.is_set():
                    return _ok([])
                self._lock.wait(min(left, 0.5))

    def _limited(self) -> Outcome | None:
        if not self._rate_limits:
            return None
        retry_after = self._rate_limits.pop(0)
        self.rate_limited += 1
        return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    def _log(self, params: dict[str, Any], method: str, status: int) -> None:
        try:
            chat_id = int(params.get("chat_id", 0))
        except (TypeError, ValueError):
            chat_id = 0
        self._calls.append(ApiCall(time.monotonic(), chat_id, method, status))

    def _send_message(self, _bot: _Bot, params: dict[str, Any]) -> Outcome:
        raw = params.get("text")
        if not isinstance(raw, str) or not raw:
            return _error(400, "Bad Request: message text is empty")
        text, problem = _visible(raw, params.get("parse_mode"))
        with self._lock:
            if problem:
                self._log(params, "sendMessage", 400)
                return _error(400, f"Bad Request: can't parse entities: {problem}")
            if len(text) > 4096:
                self._log(params, "sendMessage", 400)
                return _error(400, "Bad Request: message is too long")
            limited = self._limited()
            if limited is not None:
                self._log(params, "sendMessage", 429)
                return limited
            self._log(params, "sendMessage", 200)
            chat_id = int(params["chat_id"])
            thread = params.get("message_thread_id")
            self._next_message += 1
            sent = SentMessage(
                chat_id,
                self._next_message,
                text,
                int(thread) if thread else None,
                html=raw if text != raw or params.get("parse_mode") else "",
                sent_at=time.monotonic(),
            )
            self._sent.append(sent)
            self._lock.notify_all()
        return _ok(
            {
                "message_id": sent.message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": text,
            }
        )

    def _edit_message(self, _bot: _Bot, params: dict[str, Any]) -> Outcome:
        raw = str(params.get("text", ""))
        text, problem = _visible(raw, params.get("parse_mode"))
        with self._lock:
            if problem:
                self._log(params, "editMessageText", 400)
                return _error(400, f"Bad Request: can't parse entities: {problem}")
            if not text or len(text) > 4096:
                self._log(params, "editMessageText", 400)
                return _error(400, "Bad Request: message text is empty or too long")
            limited = self._limited()
            if limited is not None:
                self._log(params, "editMessageText", 429)
                return limited
            chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
            for sent in self._sent:
                if sent.chat_id == chat_id and sent.message_id == message_id:
                    if text == sent.text and raw == (sent.html or sent.text):
                        self._log(params, "editMessageText", 400)
                        return _error(
                            400,
                            "Bad Request: message is not modified: specified new message content "
                            "and reply markup are exactly the same as a current content and reply "
                            "markup of the message",
                        )
                    self._log(params, "editMessageText", 200)
                    sent.text = text
                    sent.html = raw if params.get("parse_mode") else ""
                    sent.edits += 1
                    sent.edited_at.append(time.monotonic())
                    self._lock.notify_all()
                    return _ok(
                        {
                            "message_id": message_id,
                            "date": int(time.time()),
                            "chat": {"id": chat_id, "type": "private"},
                            "text": sent.text,
                        }
                    )
            self._log(params, "editMessageText", 400)
        return _error(400, "Bad Request: message to edit not found")
