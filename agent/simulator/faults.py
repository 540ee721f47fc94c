"""Faults the simulator can apply to its next requests.

A fault is consumed by the next provider request (first in, first out):

- ``"429"``: rate limited, with ``retry-after`` / ``retry-after-ms`` headers and
  a body in the provider's error format (the SDKs retry it);
- ``"500"``: an internal server error (the SDKs retry it);
- ``"slow"``: wait ``seconds`` before answering normally (for client timeouts);
- ``"drop"``: close the connection without any response.

Strings are accepted wherever a :class:`Fault` is: ``"429"``, ``"500"``,
``"drop"``, ``"slow"`` (``DEFAULT_SLOW_SECONDS``) or ``"slow:2.5"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from cluster.errors import ConfigError

__all__ = ["DEFAULT_RETRY_AFTER", "DEFAULT_SLOW_SECONDS", "Fault", "FaultKind", "parse_fault"]

FaultKind = Literal["429", "500", "slow", "drop"]
_KINDS: tuple[str, ...] = ("429", "500", "slow", "drop")

DEFAULT_RETRY_AFTER = 0.05
"""Seconds a 429 asks the client to wait (short, so SDK retries keep tests fast)."""

DEFAULT_SLOW_SECONDS = 5.0
"""Seconds a ``"slow"`` fault waits when none are given."""


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: ``"429"``, ``"500"``, ``"slow"`` or ``"drop"``.
        seconds: for ``"slow"``, how long to wait before answering.
        retry_after: for ``"429"``, the delay the response asks for, in seconds.
    """

    kind: FaultKind
    seconds: float = DEFAULT_SLOW_SECONDS
    retry_after: float = DEFAULT_RETRY_AFTER

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; use one of {', '.join(_KINDS)}")
        if self.seconds < 0 or self.retry_after < 0:
            raise ConfigError(
                f"fault {self.kind!r}: seconds and retry_after must be >= 0, "
                f"got seconds={self.seconds}, retry_after={self.retry_after}"
            )

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """A fault that delays the answer by ``seconds``."""
        return cls("slow", seconds=seconds)

    @classmethod
    def rate_limited(cls, retry_after: float = DEFAULT_RETRY_AFTER) -> Fault:
        """A 429 that asks the client to retry after ``retry_after`` seconds."""
        return cls("429", retry_after=retry_after)


def parse_fault(spec: Fault | str | Mapping[str, Any]) -> Fault:
    """Turn a fault spec into a :class:`Fault`.

    Args:
        spec: a Fault; a string (``"429"``, ``"500"``, ``"drop"``, ``"slow"``,
            ``"slow:2.5"``); or a mapping with ``kind`` and optional
            ``seconds`` / ``retry_after`` (as posted to ``POST /faults``).

    Returns:
        The fault.

    Raises:
        ConfigError: the spec names no known fault.
    """
    if isinstance(spec, Fault):
        return spec
    if isinstance(spec, str):
        kind, _, arg = spec.strip().partition(":")
        if kind == "slow" and arg:
            return Fault.slow(_number(arg, spec))
        if kind == "429" and arg:
            return Fault.rate_limited(_number(arg, spec))
        if arg:
            raise ConfigError(f"fault {spec!r} takes no argument; use one of {', '.join(_KINDS)}")
        return Fault(cast(FaultKind, kind))
    if isinstance(spec, Mapping):
        kind = str(spec.get("kind", ""))
        return Fault(
            cast(FaultKind, kind),
            seconds=_number(spec.get("seconds", DEFAULT_SLOW_SECONDS), spec),
            retry_after=_number(spec.get("retry_after", DEFAULT_RETRY_AFTER), spec),
        )
    raise ConfigError(f"a fault is a Fault, a string or a mapping, got {type(spec).__name__}")


def _number(value: Any, spec: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"fault {spec!r}: {value!r} is not a number of seconds") from None
