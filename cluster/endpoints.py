"""Provider endpoints: declared by each worker, chosen by name in the cluster config.

Which provider URLs a worker may call, and which api key it sends to each, is
the worker operator's decision, never the config pusher's: a pushed config
that could pair ``base_url: http://attacker/v1`` with ``api_key_env:
ANTHROPIC_API_KEY`` would send the key wherever it pointed. So an endpoint
(wire format, URL, the NAME of the variable holding its key) is declared in
the worker's settings (``endpoints`` in the settings file, or
``AGENT_CLUSTER_ENDPOINTS`` as a YAML mapping), on top of the built-in ones
of :data:`BUILTIN_ENDPOINTS`, and the config's ``model.endpoint`` names one::

    endpoints:
      sim: {provider: openai, base_url: "http://10.0.0.5:8199/v1"}
      team-claude: {provider: anthropic, base_url: "https://api.anthropic.com",
                    api_key_env: TEAM_ANTHROPIC_KEY}

An endpoint without ``api_key_env`` sends :data:`NO_KEY` (the simulator
needs a key-shaped header, not a secret). Pure: no I/O, no environment read
here except through the mapping a caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from cluster.errors import ConfigError

__all__ = [
    "BUILTIN_ENDPOINTS",
    "NO_KEY",
    "Endpoint",
    "EndpointTable",
    "parse_endpoints",
]

NO_KEY = "no-key-configured"
"""What an endpoint declared without ``api_key_env`` sends as its key (nothing secret)."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^https?://[^\s/@]+(/\S*)?$")
_PROVIDERS = ("offline", "openai", "anthropic")
# The cluster's own settings (the Redis URL and its password among them) are never a provider key.
_RESERVED_ENV_PREFIX = "AGENT_CLUSTER_"


@dataclass(frozen=True)
class Endpoint:
    """One provider endpoint a worker may call.

    Attributes:
        name: What ``model.endpoint`` calls it.
        provider: Wire format: ``offline``, ``openai`` or ``anthropic``.
        base_url: Where requests go (``None`` for ``offline``).
        api_key_env: The worker environment variable whose value is sent as
            the key (``None``: :data:`NO_KEY` is sent).
    """

    name: str
    provider: str
    base_url: str | None = None
    api_key_env: str | None = None

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The key this endpoint sends: from ``environ[api_key_env]`` only.

        Returns:
            ``None`` for the offline provider, :data:`NO_KEY` for an endpoint
            declared without a key.

        Raises:
            ConfigError: the variable is not set (the message names it).
        """
        if self.provider == "offline":
            return None
        if self.api_key_env is None:
            return NO_KEY
        key = environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"endpoint {self.name!r} sends the key in {self.api_key_env}: set it in every "
                "worker's environment"
            )
        return key


BUILTIN_ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType(
    {
        "offline": Endpoint("offline", "offline"),
        "openai": Endpoint("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        "anthropic": Endpoint(
            "anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"
        ),
        "simulator": Endpoint("simulator", "openai", "http://127.0.0.1:8199/v1"),
        "simulator-anthropic": Endpoint(
            "simulator-anthropic", "anthropic", "http://127.0.0.1:8199"
        ),
    }
)
"""Endpoints every worker has unless its settings declare another under the same name:
the official OpenAI and Anthropic APIs with their usual key variables, the offline
model, and the provider simulator on its default port (``agent-cluster simulate-llm``)."""


def _entry(name: Any, raw: Any) -> Endpoint:
    if isinstance(raw, Endpoint):
        return raw
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"endpoints entry {name!r}: a name is 1-32 letters, digits, '_' or '-'")
    where = f"endpoints entry {name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where} must be a mapping {{provider, base_url, api_key_env}}, got {raw!r}"
        )
    unknown = sorted(set(map(str, raw)) - {"provider", "base_url", "api_key_env"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; an endpoint has provider, base_url, api_key_env"
        )
    provider = raw.get("provider")
    if provider not in _PROVIDERS:
        raise ConfigError(
            f"{where}: provider must be one of {', '.join(_PROVIDERS)}, got {provider!r}"
        )
    base_url = raw.get("base_url")
    key_env = raw.get("api_key_env")
    if provider == "offline":
        if base_url is not None or key_env is not None:
            raise ConfigError(f"{where}: the offline provider takes no base_url or api_key_env")
        return Endpoint(name, provider)
    if not isinstance(base_url, str) or not _URL.match(base_url):
        raise ConfigError(
            f"{where}: base_url must be an http:// or https:// URL without user or password "
            f"(the key comes from api_key_env), got {base_url!r}"
        )
    if key_env is not None:
        if not isinstance(key_env, str) or not _ENV_NAME.match(key_env):
            raise ConfigError(
                f"{where}: api_key_env must be an environment variable name such as "
                f"OPENAI_API_KEY, got {key_env!r}"
            )
        if key_env.upper().startswith(_RESERVED_ENV_PREFIX):
            raise ConfigError(
                f"{where}: api_key_env {key_env} is one of the cluster's own settings, not a "
                "provider key; name the variable that holds the provider's key"
            )
    return Endpoint(name, provider, base_url, key_env)


def parse_endpoints(raw: Any) -> Mapping[str, Endpoint]:
    """Check declared endpoints (a mapping, or its YAML text from an environment variable).

    Returns:
        Name -> :class:`Endpoint`, read-only (the declared ones only; see
        :class:`EndpointTable` for the built-ins).

    Raises:
        ConfigError: one line naming the entry and what is wrong with it.
    """
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw) if raw.strip() else {}
        except yaml.YAMLError:
            raise ConfigError(
                "endpoints is not valid YAML; write a mapping such as {sim: {provider: openai, "
                'base_url: "http://127.0.0.1:8199/v1"}}'
            ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            "endpoints must be a mapping of name to {provider, base_url, api_key_env}, got "
            f"{raw!r}"
        )
    return MappingProxyType({str(name): _entry(name, entry) for name, entry in raw.items()})


class EndpointTable:
    """The endpoints one worker may call: the built-ins overlaid with its declared ones."""

    def __init__(self, declared: Mapping[str, Endpoint] | None = None) -> None:
        self._all = {**BUILTIN_ENDPOINTS, **(declared or {})}

    def key_variables(self) -> list[str]:
        """The environment variables whose values these endpoints send as keys, sorted."""
        return sorted({e.api_key_env for e in self._all.values() if e.api_key_env})

    def names(self) -> list[str]:
        """Every endpoint name, sorted."""
        return sorted(self._all)

    def get(self, name: str) -> Endpoint:
        """The endpoint called ``name``.

        Raises:
            ConfigError: no such endpoint on this worker (the message lists the known ones).
        """
        endpoint = self._all.get(name)
        if endpoint is None:
            raise ConfigError(
                f"model.endpoint {name!r} is not declared on this worker (it has "
                f"{', '.join(self.names())}); declare it in the worker's settings (endpoints) "
                "or push a config naming one of these"
            )
        return endpoint
