"""Who may call the HTTP API: API keys for the chat endpoints, a bearer token for admin.

Only SHA-256 digests of API keys are ever configured or held in memory
(``AGENT_CLUSTER_API_KEY_SHA256``: comma-separated hex digests;
``AGENT_CLUSTER_API_KEY_SHA256_FILE``: one digest per line, ``#`` comments).
A request's key is hashed and compared with every configured digest with
:func:`hmac.compare_digest` (constant time, and every digest is compared, so
the time does not tell which one nearly matched). The admin token
(``AGENT_CLUSTER_ADMIN_TOKEN``) is hashed at start and compared the same way.

Make a digest with ``printf %s "$KEY" | sha256sum``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.errors import ConfigError

__all__ = ["ADMIN_TOKEN_ENV", "API_KEYS_ENV", "API_KEYS_FILE_ENV", "Credentials", "key_digest"]

API_KEYS_ENV = "AGENT_CLUSTER_API_KEY_SHA256"
API_KEYS_FILE_ENV = "AGENT_CLUSTER_API_KEY_SHA256_FILE"
ADMIN_TOKEN_ENV = "AGENT_CLUSTER_ADMIN_TOKEN"

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key's UTF-8 bytes (what the settings hold)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _digests(values: Iterable[str], where: str) -> frozenset[str]:
    found: set[str] = set()
    for number, raw in enumerate(values, start=1):
        value = raw.split("#", 1)[0].strip().lower()
        if not value:
            continue
        if not _DIGEST_RE.match(value):
            raise ConfigError(
                f"{where} entry {number} is not a SHA-256 hex digest (64 hex digits); store "
                'digests, never keys: printf %s "$KEY" | sha256sum'
            )
        found.add(value)
    return frozenset(found)


@dataclass(frozen=True)
class Credentials:
    """The digests of the accepted API keys and of the admin token.

    Attributes:
        api_key_digests: SHA-256 hex digests of the accepted API keys; empty:
            every chat request is refused (unless ``anonymous``).
        admin_digest: SHA-256 hex digest of the admin token; ``None``: the
            admin endpoints are disabled.
        anonymous: Accept chat requests without a key (trusted local setups only).
    """

    api_key_digests: frozenset[str] = field(default_factory=frozenset)
    admin_digest: str | None = None
    anonymous: bool = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, anonymous: bool = False
    ) -> Credentials:
        """Read the digests from the environment (and the digest file it names).

        Raises:
            ConfigError: an entry is not a digest, or the file cannot be read.
        """
        env = os.environ if environ is None else environ
        digests = _digests(env.get(API_KEYS_ENV, "").split(","), API_KEYS_ENV)
        path = env.get(API_KEYS_FILE_ENV)
        if path:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"{API_KEYS_FILE_ENV}={path!r} cannot be read: {exc.strerror}"
                ) from None
            digests |= _digests(lines, path)
        token = env.get(ADMIN_TOKEN_ENV) or None
        return cls(
            api_key_digests=digests,
            admin_digest=None if token is None else key_digest(token),
            anonymous=anonymous,
        )

    def api_key_ok(self, key: str | None) -> bool:
        """Whether ``key`` is one of the accepted API keys (constant time per digest)."""
        if self.anonymous:
            return True
        if not key:
            return False
        digest = key_digest(key)
        ok = False
        for known in self.api_key_digests:
            ok |= hmac.compare_digest(digest, known)
        return ok

    def admin_ok(self, token: str | None) -> bool:
        """Whether ``token`` is the admin token (constant time)."""
        if self.admin_digest is None or not token:
            return False
        return hmac.compare_digest(key_digest(token), self.admin_digest)
