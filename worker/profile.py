"""What agent a worker builds for a session, from the cluster config document.

The config document is published to Redis by the admin (``cluster.versions``,
validated against ``cluster.config_schema``); it names the provider endpoint
(``model.endpoint``), and the worker's own settings say what that endpoint is
(``cluster.endpoints``): its URL and the environment variable whose key it
sends. Nothing in the config can pair a key with another URL. This module is
pure: it turns (config, registry generation, the worker's endpoints,
environment) into an :class:`AgentProfile` and a per-session signature for
the agent cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.compression import CompressionSettings
from agent.prompt import PROMPT_TEMPLATE_DIGEST
from cluster.config_schema import (
    DEFAULT_COMPRESSION_TARGET,
    DEFAULT_COMPRESSION_THRESHOLD,
    DEFAULT_PROTECT_LAST_N,
)
from cluster.endpoints import Endpoint, EndpointTable
from cluster.errors import ConfigError
from worker.cache.signature import config_signature, extract_cache_busting_config

DEFAULT_TOOLSETS = ("memory", "process", "terminal", "todo")
# Keys of documents published before endpoints were declared by workers: such a
# document is not run on a guessed endpoint; its turns fail saying to push it again.
_RETIRED_MODEL_KEYS = ("provider", "base_url", "api_key_env")


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class AgentProfile:
    """The agent settings every session of the cluster shares.

    Attributes:
        model: the model name sent to the provider.
        endpoint: the worker-declared endpoint ``model.endpoint`` names
            (provider, URL, key variable); ``None`` when :attr:`problem` says why.
        api_mode: ``model.api_mode``.
        max_tokens: ``model.max_tokens``, sent with every model call (``None``: the agent's
            default).
        toolsets: enabled toolsets (``agent.toolsets`` minus ``agent.disabled_toolsets``), sorted.
        ephemeral_prompt: extra system prompt text (``agent.ephemeral_system_prompt``).
        max_iterations: tool-loop bound per turn.
        busting: the cache-busting config values (DESIGN: editing one busts agents).
        fallback: ``model.fallback``'s model name and endpoint, or None.
        reasoning_effort: the default reasoning of every turn (``agent.reasoning_effort``).
        compression: ``model.context_length`` and ``compression.*`` when
            ``compression.enabled``; ``None``: sessions are never compressed.
        problem: why the config cannot be run on this worker (an endpoint it
            does not declare, a document of the retired shape), raised at each turn.
    """

    model: str = "offline-echo"
    endpoint: Endpoint | None = Endpoint("offline", "offline")
    api_mode: str | None = None
    max_tokens: int | None = None
    toolsets: tuple[str, ...] = DEFAULT_TOOLSETS
    ephemeral_prompt: str | None = None
    max_iterations: int = 10
    busting: Mapping[str, Any] = field(default_factory=dict)
    fallback: tuple[str, Endpoint] | None = None
    reasoning_effort: str | None = None
    compression: CompressionSettings | None = None
    problem: str | None = None

    @property
    def provider(self) -> str:
        """The endpoint's wire format (``offline`` when the endpoint is unknown)."""
        return self.endpoint.provider if self.endpoint is not None else "offline"

    @property
    def base_url(self) -> str | None:
        """The endpoint's URL."""
        return self.endpoint.base_url if self.endpoint is not None else None

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | None,
        *,
        registry_generation: int,
        endpoints: EndpointTable | None = None,
    ) -> AgentProfile:
        """Read the profile from a config document.

        Args:
            config: The published document.
            registry_generation: The cluster's tool registry generation.
            endpoints: The endpoints this worker declares (default: the built-ins).

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
        table = endpoints or EndpointTable()
        problem: str | None = None
        endpoint: Endpoint | None = None
        fallback: tuple[str, Endpoint] | None = None
        retired = [key for key in _RETIRED_MODEL_KEYS if key in model] + (
            ["providers"] if "providers" in config else []
        )
        try:
            if retired:
                raise ConfigError(
                    f"the cluster config sets {', '.join(retired)}, which workers no longer "
                    "read: endpoints and their keys are declared in each worker's settings; "
                    "push the config again naming one with model.endpoint"
                )
            endpoint = table.get(str(model.get("endpoint", "offline")))
            fallback = _fallback(model, endpoint, table)
        except ConfigError as exc:
            problem = str(exc)
        max_tokens = model.get("max_tokens")
        with_generation = {
            **config,
            "tools": {**_section(config, "tools"), "registry_generation": registry_generation},
        }
        return cls(
            model=str(model.get("default", "offline-echo")),
            endpoint=endpoint,
            api_mode=model.get("api_mode"),
            max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
            toolsets=tuple(sorted(set(toolsets) - set(disabled))),
            ephemeral_prompt=agent.get("ephemeral_system_prompt"),
            reasoning_effort=agent.get("reasoning_effort"),
            max_iterations=max_iterations,
            busting=extract_cache_busting_config(with_generation),
            fallback=fallback,
            compression=_compression(config),
            problem=problem,
        )

    def fallback_runtime(self, environ: Mapping[str, str]) -> dict[str, Any] | None:
        """The fallback endpoint for ``AIAgent(fallback=...)``, its key as its endpoint declares.

        Raises:
            ConfigError: the fallback endpoint's key variable is not set.
        """
        if self.fallback is None:
            return None
        model, endpoint = self.fallback
        return {
            "model": model,
            "provider": endpoint.provider,
            "base_url": endpoint.base_url,
            "api_key": endpoint.api_key(environ),
        }

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The key the endpoint sends, from the variable the worker declared for it.

        ``None`` for the offline provider.

        Raises:
            ConfigError: the config cannot run on this worker (:attr:`problem`),
                or the endpoint's variable is not set (the message names it).
        """
        if self.endpoint is None:
            raise ConfigError(self.problem or "no model endpoint")
        return self.endpoint.api_key(environ)

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

    def prompt_key(self) -> str:
        """What builds a session's frozen prompt (identity, ephemeral prompt, tools, model).

        A stored frozen prompt is reused by a rebuilt agent while this key is
        unchanged: a push of a request parameter (``model.max_tokens``,
        compression settings, the endpoint) rebuilds agents but not their
        prompt, so the provider's cache keeps hitting.
        """
        blob = json.dumps(
            [
                PROMPT_TEMPLATE_DIGEST,
                self.model,
                list(self.toolsets),
                self.ephemeral_prompt or "",
                self.busting.get("tools.registry_generation"),
                self.busting.get("memory.provider"),
            ],
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def busting_digest(self) -> str:
        """A digest of everything that busts cached agents (for config events)."""
        blob = json.dumps(
            [
                self.model,
                self.endpoint,
                self.api_mode,
                self.max_tokens,
                list(self.toolsets),
                self.ephemeral_prompt,
                dict(self.busting),
                self.fallback,
                self.reasoning_effort,
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _compression(config: Mapping[str, Any]) -> CompressionSettings | None:
    """The compression settings of a config document (``None`` unless enabled).

    Raises:
        ConfigError: enabled without ``model.context_length``, or values out of range.
    """
    section = _section(config, "compression")
    if section.get("enabled") is not True:
        return None
    context_length = _section(config, "model").get("context_length")
    if context_length is None:
        raise ConfigError("compression.enabled needs model.context_length, which is not set")
    return CompressionSettings(
        context_length=context_length,
        threshold=section.get("threshold", DEFAULT_COMPRESSION_THRESHOLD),
        target_ratio=section.get("target_ratio", DEFAULT_COMPRESSION_TARGET),
        protect_last_n=section.get("protect_last_n", DEFAULT_PROTECT_LAST_N),
    )


def _fallback(
    model: Mapping[str, Any], primary: Endpoint, table: EndpointTable
) -> tuple[str, Endpoint] | None:
    """``model.fallback`` as (model name, endpoint); its endpoint defaults to the primary's.

    Raises:
        ConfigError: it names an endpoint this worker does not declare.
    """
    fallback = model.get("fallback")
    if not isinstance(fallback, Mapping) or not fallback:
        return None
    name = fallback.get("endpoint")
    endpoint = primary if name is None else table.get(str(name))
    return str(fallback.get("default", model.get("default", "offline-echo"))), endpoint
