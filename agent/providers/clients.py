"""The worker's SDK clients: one per provider endpoint and key, shared by every agent.

An agent takes a reference with :meth:`SharedClients.acquire` and gives it
back with :meth:`ClientRef.release` (its ``release_clients()``): a release
never closes a client another agent uses. A client nobody holds stays open
for the next agent (its connections stay warm); past ``idle_cap`` unused
clients (an old endpoint or key after a config change) the least recently
released is closed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from agent.providers.http import CallRegistry, abortable_http_client

__all__ = ["ClientKey", "ClientRef", "SharedClients", "shared_clients"]

_IDLE_CAP = 4


@dataclass(frozen=True, slots=True)
class ClientKey:
    """What makes two agents' clients interchangeable. The key is kept as a digest only."""

    provider: str
    base_url: str | None
    key_digest: str
    timeout: float

    @classmethod
    def of(cls, provider: str, base_url: str | None, api_key: str, timeout: float) -> ClientKey:
        digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
        return cls(provider, base_url, digest, timeout)


class _Shared:
    __slots__ = ("calls", "client", "http", "refs")

    def __init__(self, client: Any, http: httpx2.Client, calls: CallRegistry) -> None:
        self.client = client
        self.http = http
        self.calls = calls
        self.refs = 0


class ClientRef:
    """One agent's hold on a shared client; :meth:`release` once, from any thread."""

    __slots__ = ("_key", "_owner", "_released", "calls", "client")

    def __init__(self, owner: SharedClients, key: ClientKey, shared: _Shared) -> None:
        self._owner = owner
        self._key = key
        self._released = False
        self.client = shared.client
        self.calls = shared.calls

    def call(self) -> Any:
        """Context manager marking this thread's model request (yields its :class:`Call`)."""
        return self.calls.call()

    def release(self) -> None:
        """Let go of the client (idempotent); it stays open for the other agents."""
        if not self._released:
            self._released = True
            self._owner._release(self._key)


class SharedClients:
    """Process-wide SDK clients keyed by :class:`ClientKey`, reference counted."""

    def __init__(self, *, idle_cap: int = _IDLE_CAP) -> None:
        self._lock = threading.Lock()
        self._clients: dict[ClientKey, _Shared] = {}
        self._idle: OrderedDict[ClientKey, None] = OrderedDict()
        self._idle_cap = idle_cap

    def acquire(self, key: ClientKey, build: Callable[[httpx2.Client], Any]) -> ClientRef:
        """A reference to the client for ``key``, built with ``build(http_client)`` on first use."""
        with self._lock:
            shared = self._clients.get(key)
            if shared is None:
                http, calls = abortable_http_client(key.timeout)
                shared = self._clients[key] = _Shared(build(http), http, calls)
            shared.refs += 1
            self._idle.pop(key, None)
            return ClientRef(self, key, shared)

    def open_clients(self) -> int:
        """How many SDK clients are open (held or idle)."""
        with self._lock:
            return len(self._clients)

    def _release(self, key: ClientKey) -> None:
        closing: list[_Shared] = []
        with self._lock:
            shared = self._clients[key]
            shared.refs -= 1
            if shared.refs == 0:
                self._idle[key] = None
                while len(self._idle) > self._idle_cap:
                    old, _ = self._idle.popitem(last=False)
                    closing.append(self._clients.pop(old))
        for old_shared in closing:
            old_shared.client.close()


_SHARED = SharedClients()


def shared_clients() -> SharedClients:
    """This process's shared SDK clients."""
    return _SHARED
