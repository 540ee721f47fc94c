"""What agent a worker builds for a session, from the cluster config document.

The config document is published to Redis by the admin (``cluster.versions``,
validated against ``cluster.config_schema``); api keys never are: they come
from the worker's environment, from the variable that ``providers.<name>.api_key_env``
names (default ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``). This module is
pure: it turns (config, registry generation, environment) into an
:class:`AgentProfile` and a per-session signature for the agent cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.providers import KEY_ENV
from cluster.errors import ConfigError
from worker.cache.signature import config_signature, extract_cache_busting_config

DEFAULT_TOOLSETS = ("memory", "process", "terminal", "todo")


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class AgentProfile:
    """The agent settings every session of the cluster shares.

    Attributes:
        model, provider, base_url, api_mode: the model endpoint (``base_url``
            from ``model.base_url``, else ``providers.<provider>.base_url``).
        api_key_env: the worker environment variable holding the provider's key.
        toolsets: enabled toolsets (``agent.toolsets`` minus ``agent.disabled_toolsets``), sorted.
        ephemeral_prompt: extra system prompt text (``agent.ephemeral_system_prompt``).
        max_iterations: tool-loop bound per turn.
        busting: the cache-busting config values (DESIGN: editing one busts agents).
        fallback: ``model.fallback`` (default, provider, base_url, api_key_env), or None.
        reasoning_effort: the default reasoning of every turn (``agent.reasoning_effort``).
    """

    model: str = "offline-echo"
    provider: str = "offline"
    base_url: str | None = None
    api_mode: str | None = None
    api_key_env: str | None = None
    toolsets: tuple[str, ...] = DEFAULT_TOOLSETS
    ephemeral_prompt: str | None = None
    max_iterations: int = 10
    busting: Mapping[str, Any] = field(default_factory=dict)
    fallback: Mapping[str, Any] | None = None
    reasoning_effort: str | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | None, *, registry_generation: int
    ) -> AgentProfile:
        """Read the profile from a config document.

        Raises:
            ConfigError: a value has the wrong type (the message names the key).
        """
        config = config or {}
        model = _section(config, "model")
        agent = _section(config, "agent")
        toolsets = agent.get("toolsets", list(DEFAULT_TOOLSETS))
        disabled = agent.get("disabled_toolsets") or []
        if not isinstance(toolsets, list) or not all(isinstance(t, str) for t in toolsets):
            raise ConfigError(f"agent.toolsets must be a list of toolset names, got {toolsets!r}")
        if not isinstance(disabled, list):
            raise ConfigError(f"agent.disabled_toolsets must be a list, got {disabled!r}")
        max_iterations = agent.get("max_iterations", 10)
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise ConfigError(
                f"agent.max_iterations must be a positive integer, got {max_iterations!r}"
            )
        providers = _section(config, "providers")
        provider = str(model.get("provider", "offline"))
        provider_section = providers.get(provider)
        provider_settings = provider_section if isinstance(provider_section, Mapping) else {}
        key_env = provider_settings.get("api_key_env") or KEY_ENV.get(provider)
        with_generation = {
            **config,
            "tools": {**_section(config, "tools"), "registry_generation": registry_generation},
        }
        return cls(
            model=str(model.get("default", "offline-echo")),
            provider=provider,
            base_url=model.get("base_url") or provider_settings.get("base_url"),
            api_mode=model.get("api_mode"),
            api_key_env=None if key_env is None else str(key_env),
            toolsets=tuple(sorted(set(toolsets) - set(disabled))),
            ephemeral_prompt=agent.get("ephemeral_system_prompt"),
            reasoning_effort=agent.get("reasoning_effort"),
            max_iterations=max_iterations,
            busting=extract_cache_busting_config(with_generation),
            fallback=_fallback(model),
        )

    def fallback_runtime(self, environ: Mapping[str, str]) -> dict[str, Any] | None:
        """The fallback endpoint for ``AIAgent(fallback=...)``, key from the environment."""
        if self.fallback is None:
            return None
        provider = str(self.fallback.get("provider", self.provider))
        env_name = self.fallback.get("api_key_env") or KEY_ENV.get(provider)
        return {
            "model": self.fallback.get("default", self.model),
            "provider": provider,
            "base_url": self.fallback.get("base_url"),
            "api_key": environ.get(str(env_name)) if env_name else None,
        }

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The provider's api key from the worker's environment (never from Redis).

        ``None`` for a provider that needs none (offline).

        Raises:
            ConfigError: the variable is not set; the message names it (the
                variable the config chose, never silently another one).
        """
        env_name = self.api_key_env or KEY_ENV.get(self.provider)
        if not env_name:
            return None
        key = environ.get(env_name)
        if not key:
            raise ConfigError(
                f"provider {self.provider!r} needs an api key: set {env_name} in every worker's "
                "environment (the cluster config names the variable in "
                f"providers.{self.provider}.api_key_env; default {KEY_ENV.get(self.provider)})"
            )
        return key

    def runtime(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The runtime dict of ``config_signature``."""
        return {
            "api_key": self.api_key(environ),
            "base_url": self.base_url,
            "provider": self.provider,
            "api_mode": self.api_mode,
        }

    def signature(self, environ: Mapping[str, str], *, user_id: str | None = None) -> str:
        """The agent-cache signature of a session of ``user_id`` under this profile."""
        return config_signature(
            self.model,
            self.runtime(environ),
            list(self.toolsets),
            self.ephemeral_prompt,
            cache_keys=dict(self.busting),
            user_id=user_id,
        )

    def busting_digest(self) -> str:
        """A digest of everything that busts cached agents (for config events)."""
        blob = json.dumps(
            [
                self.model,
                self.provider,
                self.base_url,
                self.api_mode,
                list(self.toolsets),
                self.ephemeral_prompt,
                dict(self.busting),
                dict(self.fallback or {}),
                self.reasoning_effort,
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fallback(model: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``model.fallback`` as plain settings (validated by the config schema at push)."""
    fallback = model.get("fallback")
    return dict(fallback) if isinstance(fallback, Mapping) and fallback else None
