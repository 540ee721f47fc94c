"""The last line of defence: secrets the worker knows never reach the model.

A worker knows secrets from its environment and from connection URLs it read
elsewhere (the Redis URL from ``AGENT_CLUSTER_REDIS_URL_FILE``,
``--redis-url-file`` or the settings file). The sandbox already keeps them out
of tool processes; this catches what slips through another way (an MCP server
that prints its token, a secret passed into the sandbox on purpose, a config
mistake, a user who learnt one). Every tool result is passed through
:meth:`SecretRedactor.redact` before the model (and the session history in
Redis) sees it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 8
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW(OR)?D|PASS|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION|DSN|_URL$)",
    re.IGNORECASE,
)
# scheme://user:password@ in any URL-looking value (greedy up to the last '@').
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]*$")
# A Sentinel URL's own password travels in its query (redis+sentinel://...?sentinel_password=).
_QUERY_PASSWORD = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.-]*://.*[?&]sentinel_password=(?P<password>[^&#]+)"
)


def _add_url(found: set[str], value: str) -> bool:
    """Add ``value`` and its passwords to ``found`` if it is a URL with a password."""
    passwords = [m.group("password") for m in (_URL_PASSWORD.match(value),) if m]
    passwords += [m.group("password") for m in (_QUERY_PASSWORD.match(value),) if m]
    if not passwords:
        return False
    found.add(value)
    found.update(p for p in passwords if len(p) >= 4)
    return True


@dataclass(frozen=True)
class SecretRedactor:
    """Replaces known secret values with ``[redacted]``.

    Attributes:
        values: the secret strings, longest first (so a secret that contains
            another is replaced whole).
    """

    values: tuple[str, ...] = ()

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        urls: Iterable[str] = (),
        secret_names: Iterable[str] = (),
    ) -> SecretRedactor:
        """Collect the secrets of ``environ`` (default: this process' environment) and ``urls``.

        A variable counts when its name looks like a secret (``*_KEY``,
        ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*_URL`` with a password, ...)
        and its value has at least 8 characters; for a URL the password part
        is collected too, so it is hidden wherever it appears alone.

        Args:
            environ: the environment to read.
            urls: connection URLs the worker holds from elsewhere (the Redis URL
                read from a file); each one carrying a password is collected
                with its password.
            secret_names: variables declared to hold a secret whatever their
                name (the key variable of each provider endpoint the worker
                declares); their values are collected at any length of 4 or more.
        """
        env = os.environ if environ is None else environ
        found: set[str] = set()
        for name, value in env.items():
            if not _SECRET_NAME.search(name) or len(value) < _MIN_SECRET_CHARS:
                continue
            if not _add_url(found, value) and not name.upper().endswith("_URL"):
                found.add(value)
        for url in urls:
            _add_url(found, url)
        for name in secret_names:
            value = env.get(name, "")
            if len(value) >= 4:
                found.add(value)
        return cls(tuple(sorted(found, key=lambda v: (-len(v), v))))

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``[redacted]``."""
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


__all__ = ["REDACTED", "SecretRedactor"]
