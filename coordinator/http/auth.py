"""Who may call the HTTP API: API keys for the chat endpoints, a bearer token for admin.

Only SHA-256 digests of API keys are ever configured or held in memory
(``AGENT_CLUSTER_API_KEY_SHA256``: comma-separated entries;
``AGENT_CLUSTER_API_KEY_SHA256_FILE``: one entry per line, ``#`` comments).
An entry is ``TENANT:DIGEST`` (the key belongs to tenant ``TENANT``:
lowercase letters, digits, ``_-``) or a bare ``DIGEST`` (the key belongs to
the ``default`` tenant, as every key did before tenants existed). A digest
listed twice with two tenants is refused. A request's key is hashed and
compared with every configured digest with :func:`hmac.compare_digest`
(constant time, and every digest is compared, so the time does not tell
which one nearly matched). The admin token (``AGENT_CLUSTER_ADMIN_TOKEN``)
is hashed at start and compared the same way.

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
from cluster.keys import TENANT_NAME_RE
from cluster.tenants import DEFAULT_TENANT

__all__ = ["ADMIN_TOKEN_ENV", "API_KEYS_ENV", "API_KEYS_FILE_ENV", "Credentials", "key_digest"]

API_KEYS_ENV = "AGENT_CLUSTER_API_KEY_SHA256"
API_KEYS_FILE_ENV = "AGENT_CLUSTER_API_KEY_SHA256_FILE"
ADMIN_TOKEN_ENV = "AGENT_CLUSTER_ADMIN_TOKEN"

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key's UTF-8 bytes (what the settings hold)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _entries(values: Iterable[str], where: str, found: dict[str, str]) -> None:
    """Add the ``[TENANT:]DIGEST`` entries of ``values`` to ``found`` (digest -> tenant)."""
    for number, raw in enumerate(values, start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        tenant, sep, value = entry.rpartition(":")
        tenant = tenant.strip() if sep else DEFAULT_TENANT
        value = value.strip().lower()
        if not _DIGEST_RE.match(value):
            raise ConfigError(
                f"{where} entry {number} is not a SHA-256 hex digest (64 hex digits, optionally "
                'after TENANT:); store digests, never keys: printf %s "$KEY" | sha256sum'
            )
        if not TENANT_NAME_RE.match(tenant):
            raise ConfigError(
                f"{where} entry {number}: the tenant before ':' must be 1-32 lowercase letters, "
                "digits, '_' or '-'"
            )
        if found.get(value, tenant) != tenant:
            raise ConfigError(
                f"{where} entry {number}: this digest is already configured for tenant "
                f"{found[value]!r}; a key belongs to one tenant"
            )
        found[value] = tenant


@dataclass(frozen=True)
class Credentials:
    """The digests of the accepted API keys (with their tenants) and of the admin token.

    Attributes:
        api_keys: SHA-256 hex digest of each accepted API key -> its tenant;
            empty: every chat request is refused (unless ``anonymous``).
        admin_digest: SHA-256 hex digest of the admin token; ``None``: the
            admin endpoints are disabled.
        anonymous: Accept chat requests without a key (trusted local setups
            only); every caller is then the ``default`` tenant.
    """

    api_keys: Mapping[str, str] = field(default_factory=dict)
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
        keys: dict[str, str] = {}
        _entries(env.get(API_KEYS_ENV, "").split(","), API_KEYS_ENV, keys)
        path = env.get(API_KEYS_FILE_ENV)
        if path:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"{API_KEYS_FILE_ENV}={path!r} cannot be read: {exc.strerror}"
                ) from None
            _entries(lines, path, keys)
        token = env.get(ADMIN_TOKEN_ENV) or None
        return cls(
            api_keys=keys,
            admin_digest=None if token is None else key_digest(token),
            anonymous=anonymous,
        )

    @property
    def api_key_digests(self) -> frozenset[str]:
        """The digests of the accepted API keys."""
        return frozenset(self.api_keys)

    def tenant_for(self, key: str | None) -> str | None:
        """The tenant of ``key``, ``None`` when it is not accepted (constant time per digest).

        With ``anonymous`` every caller, with a key or without, is the ``default`` tenant.
        """
        if self.anonymous:
            return DEFAULT_TENANT
        if not key:
            return None
        digest = key_digest(key)
        tenant: str | None = None
        for known, owner in self.api_keys.items():
            if hmac.compare_digest(digest, known):
                tenant = owner
        return tenant

    def admin_ok(self, token: str | None) -> bool:
        """Whether ``token`` is the admin token (constant time)."""
        if self.admin_digest is None or not token:
            return False
        return hmac.compare_digest(key_digest(token), self.admin_digest)
