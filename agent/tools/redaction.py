"""The last line of defence: secret values of the worker's environment never reach the model.

The sandbox already keeps the worker's environment out of tool processes;
this catches what slips through another way (an MCP server that prints its
token, a secret passed into the sandbox on purpose, a config mistake). Every
tool result is passed through :meth:`SecretRedactor.redact` before the model
(and the session history in Redis) sees it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 8
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW(OR)?D|PASS|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION|DSN|_URL$)",
    re.IGNORECASE,
)
# scheme://user:password@ in any URL-looking value (greedy up to the last '@').
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]*$")


@dataclass(frozen=True)
class SecretRedactor:
    """Replaces known secret values with ``[redacted]``.

    Attributes:
        values: the secret strings, longest first (so a secret that contains
            another is replaced whole).
    """

    values: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SecretRedactor:
        """Collect the secrets of ``environ`` (default: this process' environment).

        A variable counts when its name looks like a secret (``*_KEY``,
        ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*_URL`` with a password, ...)
        and its value has at least 8 characters; for a URL the password part
        is collected too, so it is hidden wherever it appears alone.
        """
        env = os.environ if environ is None else environ
        found: set[str] = set()
        for name, value in env.items():
            if not _SECRET_NAME.search(name) or len(value) < _MIN_SECRET_CHARS:
                continue
            match = _URL_PASSWORD.match(value)
            if match:
                found.add(value)
                if len(match.group("password")) >= 4:
                    found.add(match.group("password"))
            elif not name.upper().endswith("_URL"):
                found.add(value)
        return cls(tuple(sorted(found, key=lambda v: (-len(v), v))))

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``[redacted]``."""
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


__all__ = ["REDACTED", "SecretRedactor"]
