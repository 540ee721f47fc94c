"""A reply's Markdown as each platform renders it: Telegram HTML, Slack mrkdwn.

Pure functions. Models answer in Markdown, and tool output reaches the chat
as fenced code blocks (```` ``` ````). Telegram shows a message sent with
``parse_mode=HTML`` with ``<pre><code class="language-X">`` blocks and
``<code>`` spans, and refuses a message whose ``&``, ``<``, ``>`` are not
escaped; Slack's mrkdwn shows ```` ``` ```` blocks (without a language tag)
and `` `code` ``, ``*bold*`` for Markdown's ``**bold**``, and needs ``&``,
``<``, ``>`` escaped. A block still open at the end (a reply cut by
:func:`~coordinator.platforms.splitting.split_reply` closes its blocks, a
streaming preview may not) is closed, so the result always parses.
"""

from __future__ import annotations

import re
from html import escape

__all__ = ["slack_mrkdwn", "telegram_html"]

_FENCE = "```"
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")


def _blocks(text: str) -> list[tuple[str, str, str]]:
    """``text`` as ``(kind, language, body)`` pieces: ``prose`` or ``code``, in order."""
    pieces: list[tuple[str, str, str]] = []
    prose: list[str] = []
    code: list[str] | None = None
    language = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if code is None and stripped.startswith(_FENCE):
            if prose:
                pieces.append(("prose", "", "\n".join(prose)))
                prose = []
            code, language = [], stripped[len(_FENCE) :].strip()
            continue
        if code is not None and stripped == _FENCE:
            pieces.append(("code", language, "\n".join(code)))
            code = None
            continue
        (code if code is not None else prose).append(line)
    if code is not None:  # never closed: the rest is code
        pieces.append(("code", language, "\n".join(code)))
    elif prose:
        pieces.append(("prose", "", "\n".join(prose)))
    return pieces


def _html_prose(text: str) -> str:
    out, at = [], 0
    for match in _INLINE_CODE.finditer(text):
        out.append(escape(text[at : match.start()], quote=False))
        out.append(f"<code>{escape(match.group(1), quote=False)}</code>")
        at = match.end()
    out.append(escape(text[at:], quote=False))
    return "".join(out)


def telegram_html(text: str) -> str:
    """``text`` (Markdown) as a Telegram ``parse_mode=HTML`` message with the same visible text.

    Fenced blocks become ``<pre><code>`` (with ``class="language-X"`` for a
    tagged fence), inline code ``<code>``; everything else is escaped, so no
    text of the model or a tool can inject markup or break parsing.
    """
    parts = []
    for kind, language, body in _blocks(text):
        if kind == "prose":
            parts.append(_html_prose(body))
            continue
        tag = f' class="language-{language}"' if _LANGUAGE.fullmatch(language) else ""
        parts.append(f"<pre><code{tag}>{escape(body, quote=False)}</code></pre>")
    return "\n".join(parts)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_mrkdwn(text: str) -> str:
    """``text`` (Markdown) as Slack mrkdwn: escaped, ``**bold**`` as ``*bold*``, bare fences."""
    parts = []
    for kind, _language, body in _blocks(text):
        if kind == "code":
            parts.append(f"{_FENCE}\n{_slack_escape(body)}\n{_FENCE}")
            continue
        out, at = [], 0
        for match in _INLINE_CODE.finditer(body):
            out.append(_BOLD.sub(r"*\1*", _slack_escape(body[at : match.start()])))
            out.append(f"`{_slack_escape(match.group(1))}`")
            at = match.end()
        out.append(_BOLD.sub(r"*\1*", _slack_escape(body[at:])))
        parts.append("".join(out))
    return "\n".join(parts)
