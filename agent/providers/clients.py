"""The worker's SDK clients: shared by the agents of a provider endpoint and key.

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
_AGENTS_PER_CLIENT = 64


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

    __slots__ = ("_key", "_owner", "_released", "_shared", "calls", "client")

    def __init__(self, owner: SharedClients, key: ClientKey, shared: _Shared) -> None:
        self._owner = owner
        self._key = key
        self._shared = shared
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
            self._owner._release(self._key, self._shared)


class SharedClients:
    """Process-wide SDK clients keyed by :class:`ClientKey`, reference counted.

    An endpoint gets one client for every ``agents_per_client`` agents holding
    one (a new agent takes the least held): a connection pool scans all its
    connections under one lock on every request, which a thousand calls in
    flight on one pool turn into the worker's biggest CPU cost. The clients of
    a process share one SSL context (the CA bundle is loaded once).
    """

    def __init__(
        self, *, idle_cap: int = _IDLE_CAP, agents_per_client: int = _AGENTS_PER_CLIENT
    ) -> None:
        self._lock = threading.Lock()
        self._clients: dict[ClientKey, list[_Shared]] = {}
        self._idle: OrderedDict[tuple[ClientKey, int], None] = OrderedDict()
        self._idle_cap = idle_cap
        self._per_client = agents_per_client

    def acquire(self, key: ClientKey, build: Callable[[httpx2.Client], Any]) -> ClientRef:
        """A reference to a client for ``key``, built with ``build(http_client)`` when needed."""
        with self._lock:
            shards = self._clients.setdefault(key, [])
            shared = min(shards, key=lambda shard: shard.refs, default=None)
            if shared is None or shared.refs >= self._per_client:
                http, calls = abortable_http_client(key.timeout)
                shared = _Shared(build(http), http, calls)
                shards.append(shared)
            shared.refs += 1
            self._idle.pop((key, id(shared)), None)
            return ClientRef(self, key, shared)

    def _release(self, key: ClientKey, shared: _Shared) -> None:
        closing: list[_Shared] = []
        with self._lock:
            shared.refs -= 1
            if shared.refs == 0:
                self._idle[(key, id(shared))] = None
                while len(self._idle) > self._idle_cap:
                    (old_key, old_id), _ = self._idle.popitem(last=False)
                    shards = self._clients[old_key]
                    old = next(shard for shard in shards if id(shard) == old_id)
                    shards.remove(old)
                    if not shards:
                        del self._clients[old_key]
                    closing.append(old)
        for old_shared in closing:
            old_shared.client.close()


# One per process, on purpose: its point is that the agents of one endpoint and
# key share connections, whichever worker of the process (an embedded cluster
# runs several) built them. Clients are closed when their last agent releases
# them past the idle cap; the rest close with the process.
_SHARED = SharedClients()


def shared_clients() -> SharedClients:
    """This process's shared SDK clients (a singleton: see the comment above it)."""
    return _SHARED
