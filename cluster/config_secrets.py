"""Secrets never go to Redis: the checks every published config document passes.

Config documents are validated before they reach Redis
(:func:`encode_config`, pure): a JSON-safe mapping, within the size limit, and
free of secrets, because they belong in each worker's environment, never in
Redis: refused are a key named like a secret in any naming style (``api_key``,
``apiKey``, ``accessToken``, ``privateKey``, ``db_password``, ...) holding
anything but null, a boolean or an environment reference (``"${NAME}"``); a
value that looks like a credential wherever it is (a provider key pattern,
short ones such as ``sk-test-...`` included, a bearer token, a JWT, a private
key, a URL with a password); a secret flag with its value, in one string or
an argument list (``"--api-key=..."``, ``"--auth VALUE"``,
``["--api-key", "..."]``, a password-looking ``-p VALUE``); and a secret
variable set inline (``"env PGPASS=... psql"``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from cluster.errors import ConfigError, PayloadTooLarge

__all__ = ["DEFAULT_MAX_CONFIG_BYTES", "check_secrets", "encode_config", "is_secret_key"]

DEFAULT_MAX_CONFIG_BYTES = 1024 * 1024
_MAX_DEPTH = 32
# Compact (lower case, separators removed) key names that hold a secret: a
# suffix match catches ``openai_api_key``, ``apiKey``, ``GITHUB_TOKEN``,
# ``aws_access_key_id``; a substring match catches ``db_password``, ``clientSecret``.
_SECRET_SUFFIXES = (
    "apikey",
    "accesskey",
    "accesskeyid",
    "privatekey",
    "secretkey",
    "signingkey",
    "encryptionkey",
    "token",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "credentials",
    "auth",
    "pass",
    "pwd",
)
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "privatekey", "credential")
# ``PWD``/``OLDPWD`` are directories; ``compass``, ``bypass`` merely end like ``pass``.
_NOT_SECRET = frozenset(
    {"maxtokens", "tokenizer", "cachekeys", "pwd", "oldpwd", "compass", "bypass", "author"}
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Values that are unmistakably credentials, wherever they appear in a string.
_SECRET_VALUE_RE = re.compile(
    r"""(
        \bsk-[A-Za-z0-9_-]{6,}                      # OpenAI / Anthropic keys, short test ones too
      | \bAKIA[0-9A-Z]{16}\b                        # AWS access key id
      | \bgh[pousr]_[A-Za-z0-9]{20,}                # GitHub tokens
      | \bgithub_pat_[A-Za-z0-9_]{20,}
      | \bglpat-[A-Za-z0-9_-]{16,}                  # GitLab
      | \bxox[abprs]-[A-Za-z0-9-]{10,}              # Slack
      | \bAIza[0-9A-Za-z_-]{30,}                    # Google API key
      | \bhf_[A-Za-z0-9]{30,}                       # Hugging Face
      | -----BEGIN[ A-Z]*PRIVATE\ KEY-----
      | \bBearer\s+[A-Za-z0-9._~+/=-]{16,}
      | \beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.   # a JWT
      | [A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^@\s]+@     # a URL with a password
    )""",
    re.VERBOSE,
)
# ``--api-key=VALUE`` / ``-password=VALUE`` / ``--auth VALUE`` inside a string.
_FLAG_WITH_VALUE = re.compile(r"(?:^|\s)--?([A-Za-z][A-Za-z0-9_.-]*)(?:=|\s+(?=[^\s-]))(\S+)")
# ``PGPASS=VALUE`` (``env PGPASS=... psql``, a shell command line) inside a string.
_ASSIGNMENT = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
# What follows ``-p`` when it is not a password: a port or port mapping, a path,
# or a plain lower-case name (``mkdir -p build``, ``ssh -p 22``, ``docker -p 80:80``).
_NOT_A_PASSWORD = re.compile(r"^(?:[0-9:.,/-]+|[/.~$].*|[a-z][a-z_-]*)$")
_ENV_REFERENCE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$")


def is_secret_key(name: str) -> bool:
    """Whether a config key is named like a secret, in any naming style.

    ``api_key``, ``apiKey``, ``API-KEY``, ``accessToken``, ``privateKey``,
    ``db_password``, ``clientSecret`` are; ``max_tokens``, ``cache_keys`` and
    ``tokenizer`` are not.
    """
    snake = _CAMEL_BOUNDARY.sub("_", name).lower()
    compact = re.sub(r"[^a-z0-9]", "", snake)
    if not compact or compact in _NOT_SECRET:
        return False
    return compact.endswith(_SECRET_SUFFIXES) or any(part in compact for part in _SECRET_PARTS)


def _is_env_reference(value: str) -> bool:
    return bool(_ENV_REFERENCE.match(value.strip()))


class _Refusal(ConfigError):
    """A secret found at ``path``; :func:`check_secrets` adds where it is in the document."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why


def _secret_error(path: str, why: str) -> ConfigError:
    return _Refusal(path, why)


def _where_it_belongs(path: str) -> str:
    """What to do instead, for the part of the document the secret was found in."""
    if path.startswith("mcp_servers."):
        return (
            "put the value in each worker's environment and reference it in the server's "
            'env (e.g. GITHUB_TOKEN: "${GITHUB_TOKEN}", which the worker expands)'
        )
    if path.startswith(("model.", "agent.", "providers.")) or "key" in path.lower():
        return (
            "provider keys stay in each worker's environment, named by the endpoints the "
            "worker declares (settings endpoints: base_url and api_key_env); the config "
            "chooses an endpoint with model.endpoint"
        )
    return "put the value in each worker's environment, not in the cluster config"


def _message(refusal: _Refusal, source: str, lines: Mapping[str, int]) -> str:
    # A list item of an argument list is numbered from 1 in the path; the
    # nearest enclosing key that has a line is close enough to find it.
    path = refusal.path
    line = lines.get(path)
    while line is None and path:
        path = _LAST_PART.sub("", path)
        line = lines.get(path)
    at = f" ({source} line {line})" if line is not None else ""
    return (
        f"config {refusal.path or '<root>'} {refusal.why}{at}: secrets never go to Redis; "
        f"{_where_it_belongs(refusal.path)}"
    )


_LAST_PART = re.compile(r"(\[\d+\]|\.[^.\[]*|^[^.\[]*)$")


def _check_string(value: str, path: str) -> None:
    if _SECRET_VALUE_RE.search(value):
        raise _secret_error(
            path, "holds what looks like a credential (an API key, token or URL password)"
        )
    for match in _FLAG_WITH_VALUE.finditer(value):
        if is_secret_key(match.group(1)) and not _is_env_reference(match.group(2)):
            raise _secret_error(path, f"passes a secret on a command line (--{match.group(1)} ...)")
        if match.group(1) == "p" and _is_password_like(match.group(2)):
            raise _secret_error(
                path, "passes what looks like a password on a command line (-p ...)"
            )
    for match in _ASSIGNMENT.finditer(value):
        if is_secret_key(match.group(1)) and not _is_env_reference(match.group(2)):
            raise _secret_error(path, f"sets a secret variable inline ({match.group(1)}=...)")


def _is_password_like(value: str) -> bool:
    """Whether the value of a ``-p`` flag looks like a password rather than a port or a path."""
    return not _is_env_reference(value) and not _NOT_A_PASSWORD.match(value)


def _check_argument_list(items: list[Any] | tuple[Any, ...], path: str) -> None:
    """``["--api-key", "VALUE"]``: a secret-named flag followed by its value."""
    for index, item in enumerate(items[:-1]):
        following = items[index + 1]
        if not (
            isinstance(item, str)
            and item.startswith("-")
            and "=" not in item
            and isinstance(following, str)
            and not following.startswith("-")
            and not _is_env_reference(following)
        ):
            continue
        if is_secret_key(item.lstrip("-")) or (item == "-p" and _is_password_like(following)):
            raise _secret_error(f"{path}[{index + 1}]", f"is the value of a secret flag ({item})")


def _check(value: Any, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ConfigError(f"config {path} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str):
            _check_string(value, path)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"config {path} must be a finite number, got {value!r}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"config {path} has a non-string key {key!r}; JSON keys are strings"
                )
            child = f"{path}.{key}" if path else key
            # A null, a flag (``use_api_key: true``) or a reference to an environment
            # variable (``"${GITHUB_TOKEN}"``) holds no secret; anything else does.
            if is_secret_key(key) and not (
                item is None
                or isinstance(item, bool)
                or (isinstance(item, str) and _is_env_reference(item))
            ):
                raise _secret_error(child, "is named like a secret")
            _check(item, child, depth + 1)
        return
    if isinstance(value, list | tuple):
        _check_argument_list(value, path)
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    raise ConfigError(
        f"config {path or '<root>'} must be JSON data (null, bool, number, string, list, "
        f"mapping), got {type(value).__name__}"
    )


def check_secrets(
    config: Any, *, source: str = "config", lines: Mapping[str, int] | None = None
) -> None:
    """Check that a config document is a JSON-safe mapping holding no secret.

    Args:
        config: The document.
        source: Its file name, shown with the line of a refused key.
        lines: Key path -> YAML line number (from the parsed document), if known.

    Raises:
        ConfigError: not a mapping, not JSON-safe, or holding a secret (the
            message names the offending path, its line, and says where the
            value belongs).
    """
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"config must be a mapping (a YAML/JSON object), got {type(config).__name__}"
        )
    try:
        _check(config, "", 0)
    except _Refusal as refusal:
        raise ConfigError(_message(refusal, source, lines or {})) from None


def encode_config(config: Any, *, max_bytes: int = DEFAULT_MAX_CONFIG_BYTES) -> bytes:
    """Validate a config document and encode it as compact JSON.

    Args:
        config: The document; must be a mapping with string keys.
        max_bytes: Largest accepted encoded size.

    Returns:
        The UTF-8 JSON bytes to store.

    Raises:
        ConfigError: not a mapping, not JSON-safe, or holding a secret (the
            message names the offending path).
        PayloadTooLarge: the encoded document exceeds ``max_bytes``.
    """
    check_secrets(config)
    data = json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"config is {len(data)} bytes encoded, more than the limit of {max_bytes} bytes "
            "(max_config_bytes); trim it or raise the limit"
        )
    return data
