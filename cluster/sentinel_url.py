"""``redis+sentinel://`` URLs: which Sentinels to ask, for which service, with which credentials.

The form is::

    redis+sentinel://[user:password@]host1:port1[,host2:port2,...]/service_name[/db]
    rediss+sentinel://...        (TLS to the Sentinels and to the primary)

``user:password`` authenticate to the primary (and its replicas); Sentinels
with auth of their own take ``?sentinel_password=...`` (and
``sentinel_username=...``) in the query. ``rediss+sentinel://`` takes the
same TLS options as ``rediss://`` (``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs``), used for both. Parsing is pure: nothing
connects here (:func:`cluster.connection.connect` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from cluster.errors import ConfigError

__all__ = ["SENTINEL_SCHEMES", "SentinelTarget", "is_sentinel_url", "parse_sentinel_url"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_SENTINEL_AUTH = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, repr=False)
class SentinelTarget:
    """A parsed ``redis+sentinel://`` URL.

    Attributes:
        sentinels: ``(host, port)`` of each Sentinel, in the URL's order.
        service: The monitored master's name (``sentinel monitor NAME ...``).
        db: Database number on the primary.
        username: ACL user on the primary (``None``: the default user).
        password: Password on the primary (``None``: no AUTH).
        sentinel_username: ACL user on the Sentinels.
        sentinel_password: Password on the Sentinels.
        tls: Whether every connection (Sentinels and primary) uses TLS.
        tls_options: ``ssl_*`` options from the query string.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"SentinelTarget({hosts}/{self.service}/{self.db}, tls={self.tls})"


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Sentinels rather than one Redis."""
    return url.split("://", 1)[0] in SENTINEL_SCHEMES


def parse_sentinel_url(url: str, *, shown: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` or ``rediss+sentinel://`` URL.

    Args:
        url: The URL.
        shown: The URL as errors may show it (password masked).

    Raises:
        ConfigError: not a Sentinel URL, no Sentinel, a bad port, no service
            name, a bad db, or an unknown query option.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES:
        raise ConfigError(f"a Sentinel URL starts with redis+sentinel://, got {shown!r}")
    rest, _, query = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        hostpart = rest
    hosts_text, _, path = hostpart.partition("/")
    sentinels = tuple(_host_port(item, shown) for item in hosts_text.split(",") if item)
    if not sentinels:
        raise ConfigError(
            f"Sentinel URL {shown!r} names no Sentinel: "
            "write redis+sentinel://host1:26379,host2:26379/SERVICE_NAME"
        )
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigError(
            f"Sentinel URL {shown!r} must end with /SERVICE_NAME or /SERVICE_NAME/DB "
            "(the name Sentinel monitors the primary under)"
        )
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ConfigError(f"Sentinel URL {shown!r}: the db must be a number, got a word")
        db = int(segments[1])
    username, password = _credentials(userinfo) if at else (None, None)
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(TLS_OPTIONS) - set(_SENTINEL_AUTH))
    if unknown:
        raise ConfigError(
            f"Sentinel URL {shown!r}: unknown option(s) {', '.join(unknown)}; known: "
            f"{', '.join((*_SENTINEL_AUTH, *TLS_OPTIONS))}"
        )
    tls = scheme == "rediss+sentinel"
    tls_options = {k: v for k, v in options.items() if k in TLS_OPTIONS}
    if tls_options and not tls:
        raise ConfigError(
            f"TLS options ({', '.join(sorted(tls_options))}) need a rediss+sentinel:// URL, "
            f"got {shown!r}"
        )
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(segments[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        tls=tls,
        tls_options=tls_options,
    )


def _host_port(item: str, shown: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon:
        return item, DEFAULT_SENTINEL_PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Sentinel URL {shown!r}: {item!r} is not host:port (a port is 1-65535)")
    return host.strip("[]"), int(port)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:
        # redis-py reads redis://secret@host as a user name; a lone word is a password.
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None
