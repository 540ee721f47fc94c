"""What the coordinator accepts: every field bounded and type-checked before Redis sees it.

Pure functions, no I/O: :func:`validate_message` raises or returns, and the
ingress calls it before routing, so a refused message leaves no trace in Redis
(no owner record, no queue entry).

=================  ========================================================  ===============
field              accepted                                                  limit
=================  ========================================================  ===============
``session_key``    non-blank string, valid UTF-8, no control characters      256 bytes (of a
                                                                             tenant's key
                                                                             ``@T/name``: the
                                                                             name)
``message_id``     non-empty string, valid UTF-8, no control characters      256 bytes
``text``           non-blank string, valid UTF-8                             ``max_message_bytes``
                                                                             (256 KiB default)
``user_id``        string (or int), valid UTF-8, no control characters       256 bytes
other attributes   ``platform``, ``chat_id``, ``reasoning``, ``stream``: a   1024 bytes each
                   string (valid UTF-8) or a finite number; nothing else
=================  ========================================================  ===============

"Valid UTF-8" means the string can be encoded: no lone surrogates (which a
JSON decoder produces from ``"\\ud800"``), so nothing downstream has to cope
with text that cannot be stored or sent to a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from cluster.errors import InvalidMessage, PayloadTooLarge
from cluster.tenants import client_name

SESSION_KEY_MAX_BYTES = 256
MESSAGE_ID_MAX_BYTES = 256
USER_ID_MAX_BYTES = 256
ATTR_VALUE_MAX_BYTES = 1024
ATTR_KEYS = frozenset({"platform", "user_id", "chat_id", "reasoning", "stream"})
"""Message attributes a caller may pass along with the text."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _utf8_size(field: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidMessage(
            f"{field} is not valid UTF-8 (a lone surrogate at index {exc.start}); "
            "send well-formed Unicode text"
        ) from None


def _check_non_empty_string(field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidMessage(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidMessage(f"{field} must not be empty (nor only whitespace)")


def _check_id(
    field: str, value: Any, limit: int, *, allow_int: bool = False, scoped: bool = False
) -> None:
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    _check_non_empty_string(field, value)
    # A tenant's session key (@T/name) is held to the limit of the name its client chose.
    size = _utf8_size(field, client_name(value) if scoped else value)
    _utf8_size(field, value)
    if size > limit:
        raise PayloadTooLarge(f"{field} is {size} bytes of UTF-8, more than the limit of {limit}")
    if _CONTROL.search(value):
        raise InvalidMessage(f"{field} must not contain control characters (newline, NUL, ...)")


def _check_attr(name: str, value: Any) -> None:
    if name == "user_id":
        _check_id("user_id", value, USER_ID_MAX_BYTES, allow_int=True)
        return
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMessage(
            f"attribute {name} must be a plain string or number, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMessage(f"attribute {name} must be a finite number, got {value!r}")
    if isinstance(value, str):
        size = _utf8_size(f"attribute {name}", value)
        if size > ATTR_VALUE_MAX_BYTES:
            raise PayloadTooLarge(
                f"attribute {name} is {size} bytes, more than the limit of {ATTR_VALUE_MAX_BYTES}"
            )


def validate_session_key(session_key: Any) -> str:
    """Check a session key alone (as for :func:`validate_message`) and return it.

    Raises:
        InvalidMessage: not a non-blank string, not valid UTF-8, or holding control characters.
        PayloadTooLarge: longer than :data:`SESSION_KEY_MAX_BYTES`.
    """
    _check_id("session_key", session_key, SESSION_KEY_MAX_BYTES)
    assert isinstance(session_key, str)
    return session_key


def validate_message(
    session_key: Any,
    text: Any,
    message_id: Any,
    attrs: Mapping[str, Any],
    *,
    max_text_bytes: int,
) -> None:
    """Check a submitted message; return quietly when it may be accepted.

    Raises:
        InvalidMessage: a field has the wrong type, is empty, is not valid
            UTF-8, holds control characters, or an attribute is unknown.
        PayloadTooLarge: a field is longer than its limit (the message names
            the field and the limit).
    """
    _check_id("session_key", session_key, SESSION_KEY_MAX_BYTES, scoped=True)
    _check_id("message_id", message_id, MESSAGE_ID_MAX_BYTES)
    _check_non_empty_string("text", text)
    size = _utf8_size("text", text)
    if size > max_text_bytes:
        raise PayloadTooLarge(
            f"text is {size} bytes of UTF-8, more than max_message_bytes={max_text_bytes}; "
            "split it or raise AGENT_CLUSTER_MAX_MESSAGE_BYTES"
        )
    unknown = set(attrs) - ATTR_KEYS
    if unknown:
        raise InvalidMessage(
            f"unknown message attributes {sorted(unknown)}; allowed: {sorted(ATTR_KEYS)}"
        )
    for name, value in attrs.items():
        _check_attr(name, value)


__all__ = [
    "ATTR_KEYS",
    "ATTR_VALUE_MAX_BYTES",
    "MESSAGE_ID_MAX_BYTES",
    "SESSION_KEY_MAX_BYTES",
    "USER_ID_MAX_BYTES",
    "validate_message",
    "validate_session_key",
]
