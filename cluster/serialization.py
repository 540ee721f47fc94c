"""Byte encodings for everything agent-cluster stores in Redis: msgpack, never pickle.

Two users:

* the stores (:mod:`cluster.session_store`, :mod:`cluster.tool_state`) encode
  neutral message dicts, tool state and replies with :func:`pack` and decode
  them with :func:`unpack`;
* rq queues get :class:`MsgpackSerializer` as their ``serializer=``. rq 3.0
  runs these through the serializer: the job data tuple ``(func_name,
  instance, args, kwargs)``, the job ``meta`` dict and return values
  (exception info is stored by rq as a compressed string, outside the
  serializer). msgpack turns tuples into lists, which rq unpacks and calls
  the same way.

A job payload that is not msgpack-safe (an object instance, a ``set``, a
naive ``datetime``) fails at enqueue time with a ``TypeError`` naming the
offending type, instead of silently pickling it. :meth:`MsgpackSerializer.loads`
only ever decodes msgpack: a pickle in Redis (written by a process with rq's
default serializer) is rejected, never executed.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["MsgpackSerializer", "pack", "unpack"]


def pack(obj: Any) -> bytes:
    """Encode a msgpack-safe value (None, bool, int, float, str, bytes, list, dict).

    Args:
        obj: The value; tuples are encoded as lists.

    Returns:
        The msgpack bytes. Map key order is preserved, so equal inputs built in
        the same order give byte-identical outputs (the frozen prompt relies on it).

    Raises:
        TypeError: ``obj`` contains a value msgpack cannot encode.
    """
    result: bytes = msgpack.packb(obj, use_bin_type=True)
    return result


def unpack(data: bytes | str) -> Any:
    """Decode bytes written by :func:`pack`.

    Args:
        data: msgpack bytes. ``str`` is accepted only to fail clearly: it means
            the Redis client was created with ``decode_responses=True``.

    Returns:
        The decoded value (strings as ``str``, binary as ``bytes``, arrays as lists).

    Raises:
        ValueError: ``data`` is not one complete msgpack value (for example a pickle).
        TypeError: ``data`` is a ``str``.
    """
    if isinstance(data, str):
        raise TypeError(
            "got text where msgpack bytes were expected: create the Redis client "
            "with decode_responses=False for the cluster stores"
        )
    try:
        return msgpack.unpackb(data, raw=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"not a msgpack value ({exc}); refusing to decode it") from exc
    except ValueError:
        raise
    except Exception as exc:  # msgpack raises a few unrelated types on garbage input
        raise ValueError(f"not a msgpack value ({exc!r}); refusing to decode it") from exc


class MsgpackSerializer:
    """rq serializer (``Queue(..., serializer=MsgpackSerializer)``) that never pickles.

    rq resolves a serializer by duck typing (``dumps``/``loads``), so this class
    is passed itself, not an instance; both methods are static.
    """

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        """Encode a job tuple, a ``meta`` dict or a return value."""
        try:
            return pack(obj)
        except TypeError as exc:
            raise TypeError(
                f"rq payload is not msgpack-safe ({exc}); pass plain data "
                "(str, int, float, bool, None, bytes, list, dict) to jobs"
            ) from exc

    @staticmethod
    def loads(data: bytes, /) -> Any:
        """Decode what :meth:`dumps` wrote; anything else raises ``ValueError``."""
        return unpack(data)
