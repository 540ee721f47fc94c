"""Prometheus metrics of one worker process, defined on a registry passed in.

Every metric lives on the :class:`~prometheus_client.CollectorRegistry` given
to :class:`WorkerMetrics` (never the module-level default registry), so tests
and the embedded mode, which run several workers in one process, keep each
worker's figures apart. The worker's probe endpoint
(:mod:`worker.probe_server`) serves that registry at ``/metrics``.

Two kinds of figures:

* events counted where they happen (a few one-line calls in
  :mod:`worker.turns`, :mod:`worker.executor`, :mod:`worker.process`):
  turns by outcome, turn duration, time to first token, queue wait, agents
  built, leases acquired and lost, ownership moves, recoveries, provider
  tokens and estimated cost;
* state read at scrape time from the worker's public parts (cache counters
  from ``AgentCache.metrics()``, turns running, config version, registry
  generation), so nothing in the cache or the executor has to know about
  Prometheus.

Names follow Prometheus conventions: ``agent_cluster_`` prefix, ``_total``
counters, ``_seconds`` histograms, base units, low-cardinality labels only
(outcome, cause, token kind, provider, model; never a session or message id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.providers.pricing import call_cost
from cluster.errors import ConfigError
from cluster.metric_names import LATENCY_BUCKETS, PREFIX, TOKEN_KINDS
from cluster.recovery import RecoveryReport
from worker.turn_outcome import Deferred, HandedOff

__all__ = [
    "TURN_OUTCOMES",
    "ProviderTotals",
    "WorkerMetrics",
    "estimated_cost",
]

TURN_OUTCOMES = (
    "ok",
    "interrupted",
    "rolled_back",
    "reset",
    "error",
    "deferred",
    "handed_off",
    "lease_lost",
    "answered",
)
"""Values of the ``outcome`` label of ``agent_cluster_turns_total``.

``ok``, ``interrupted``, ``rolled_back``: committed turns; ``reset``: a
``/new`` ran; ``error``: the caller got an error reply; ``deferred``: the turn
could not start yet (lease held, earlier message pending, Redis failed) and
will be retried; ``handed_off``: its session belongs to another worker, the
job moved there; ``lease_lost``: the turn lost its lease and committed
nothing (retried); ``answered``: nothing to run (already answered).
"""


def estimated_cost(provider: str, model: str, usage: Mapping[str, Any]) -> float:
    """Dollars a turn's usage costs at list price (0 for the offline model or an unknown provider).

    Args:
        provider: ``openai``, ``anthropic`` (priced) or anything else (free).
        model: The model name (its price family is found by prefix).
        usage: A reply's ``usage``: ``input_tokens``, ``cache_read_tokens``,
            ``cache_write_tokens``, ``output_tokens``.
    """
    try:
        return call_cost(
            provider,
            model,
            input_tokens=_count(usage, "input_tokens"),
            cache_read_tokens=_count(usage, "cache_read_tokens"),
            cache_write_tokens=_count(usage, "cache_write_tokens"),
            output_tokens=_count(usage, "output_tokens"),
        )
    except ConfigError:
        return 0.0


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class ProviderTotals:
    """Provider usage of one worker since it started (what its health record carries).

    Attributes:
        input_tokens: Uncached prompt tokens.
        cache_read_tokens: Prompt tokens read from the provider's cache.
        cache_write_tokens: Prompt tokens written to it.
        output_tokens: Generated tokens.
        cost_usd: Estimated dollars at list price.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def cache_hit_share(self) -> float | None:
        """Share of prompt tokens read from the provider's cache, ``None`` before any."""
        prompt = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return self.cache_read_tokens / prompt if prompt else None


class WorkerMetrics:
    """The metrics of one worker, registered on ``registry``.

    Methods are cheap and thread-safe (turn threads, the claim loop and the
    heartbeat call them); none raises for a malformed argument.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Define every metric on ``registry`` (a fresh one when omitted)."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turns = Counter(
            f"{PREFIX}_turns",
            "Turns by outcome (see worker.metrics.TURN_OUTCOMES).",
            ["outcome"],
            registry=r,
        )
        for outcome in TURN_OUTCOMES:
            self.turns.labels(outcome=outcome)
        self.turn_duration = Histogram(
            f"{PREFIX}_turn_duration_seconds",
            "Seconds from a turn's start (lease taken) to its commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Seconds from the message's acceptance by a coordinator to the turn's first text "
            "delta.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Seconds from the message's acceptance to its claim by this worker.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.agents_built = Counter(
            f"{PREFIX}_agents_built",
            "Agents built (cache misses that constructed an AIAgent).",
            registry=r,
        )
        self.leases_acquired = Counter(
            f"{PREFIX}_leases_acquired", "Running-turn leases taken.", registry=r
        )
        self.leases_lost = Counter(
            f"{PREFIX}_leases_lost",
            "Running-turn leases lost during a turn (nothing committed).",
            registry=r,
        )
        self.ownership_moves = Counter(
            f"{PREFIX}_ownership_moves",
            "Sessions this worker moved to another owner: handoff (its turn found the session "
            "owned elsewhere), recovery (a dead worker's sessions it handed on).",
            ["reason"],
            registry=r,
        )
        for reason in ("handoff", "recovery"):
            self.ownership_moves.labels(reason=reason)
        self.recoveries = Counter(
            f"{PREFIX}_recoveries", "Dead workers this worker recovered.", registry=r
        )
        self.recovered_turns = Counter(
            f"{PREFIX}_recovered_turns",
            "Turn jobs of dead workers this worker moved on.",
            registry=r,
        )
        self.recovered_leases = Counter(
            f"{PREFIX}_recovery_leases_broken",
            "Leases of dead workers broken by this worker.",
            registry=r,
        )
        self.provider_tokens = Counter(
            f"{PREFIX}_provider_tokens",
            "Provider tokens used by committed turns, by kind.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.provider_cost = Counter(
            f"{PREFIX}_provider_cost_dollars",
            "Estimated provider cost of committed turns at list price (agent.providers.pricing).",
            ["provider", "model"],
            registry=r,
        )
        self.provider_calls = Counter(
            f"{PREFIX}_provider_calls",
            "Model calls made by committed turns.",
            ["provider", "model"],
            registry=r,
        )
        self.redis_round_trips = Counter(
            f"{PREFIX}_redis_round_trips",
            "Requests this worker sent to Redis (a command, a pipeline or a script call each).",
            registry=r,
        )
        self._lock = threading.Lock()
        self._totals = ProviderTotals()

    # -- events ----------------------------------------------------------------

    def turn_outcome(self, outcome: str) -> None:
        """Count one turn attempt by outcome (one of :data:`TURN_OUTCOMES`)."""
        self.turns.labels(outcome=outcome if outcome in TURN_OUTCOMES else "error").inc()

    def turn_set_aside(self, outcome: Deferred | HandedOff) -> None:
        """Count a turn that did not run here now: deferred (retried later) or handed off."""
        if isinstance(outcome, HandedOff):
            self.turn_outcome("handed_off")
            if outcome.to_worker is not None:
                self.ownership_moves.labels(reason="handoff").inc()
        else:
            self.turn_outcome("deferred")

    def lease_lost(self) -> None:
        """Count a turn that lost its running-turn lease (it is deferred and retried)."""
        self.turn_outcome("lease_lost")
        self.leases_lost.inc()

    def turn_committed(self, reply: Mapping[str, Any], *, provider: str, model: str) -> None:
        """Record a committed turn: outcome, duration, provider tokens and cost.

        Args:
            reply: The reply record (``started_at``, ``ended_at``, ``usage``,
                ``interrupted``, ``rolled_back``).
            provider: The provider the turn ran on.
            model: The model.
        """
        if reply.get("rolled_back"):
            outcome = "rolled_back"
        elif reply.get("interrupted"):
            outcome = "interrupted"
        else:
            outcome = "ok"
        self.turn_outcome(outcome)
        started, ended = reply.get("started_at"), reply.get("ended_at")
        if isinstance(started, float) and isinstance(ended, float):
            self.turn_duration.observe(max(0.0, ended - started))
        usage = reply.get("usage")
        if isinstance(usage, Mapping):
            self.provider_usage(provider, model, usage)

    def first_token_timer(
        self, callback: Callable[[str], Any] | None, submitted_at: float
    ) -> Callable[[str], Any] | None:
        """Wrap a turn's text-delta callback so its first delta observes the time to first token.

        Only a turn that streams has a delta callback; ``None`` stays ``None``
        (the model call is not switched to streaming for the metric's sake). A
        callback wrapped for an earlier turn is unwrapped first, so a cached
        agent never piles up wrappers.
        """
        inner = getattr(callback, "__wrapped__", callback)
        if inner is None:
            return None
        seen = threading.Event()

        def on_delta(text: str) -> Any:
            if not seen.is_set():
                seen.set()
                self.time_to_first_token.observe(max(0.0, time.time() - submitted_at))
            return inner(text)

        on_delta.__wrapped__ = inner  # type: ignore[attr-defined]
        return on_delta

    def provider_usage(self, provider: str, model: str, usage: Mapping[str, Any]) -> None:
        """Add one turn's provider usage (tokens by kind, calls, estimated cost)."""
        counts = {kind: _count(usage, f"{kind}_tokens") for kind in TOKEN_KINDS}
        cost = estimated_cost(provider, model, usage)
        for kind, tokens in counts.items():
            self.provider_tokens.labels(provider=provider, model=model, kind=kind).inc(tokens)
        self.provider_calls.labels(provider=provider, model=model).inc(_count(usage, "api_calls"))
        self.provider_cost.labels(provider=provider, model=model).inc(cost)
        with self._lock:
            t = self._totals
            self._totals = ProviderTotals(
                t.input_tokens + counts["input"],
                t.cache_read_tokens + counts["cache_read"],
                t.cache_write_tokens + counts["cache_write"],
                t.output_tokens + counts["output"],
                t.cost_usd + cost,
            )

    def provider_totals(self) -> ProviderTotals:
        """Provider usage since start (for the health record and the status page)."""
        with self._lock:
            return self._totals

    def claimed(self, submitted_at: float, claimed_at: float) -> None:
        """Observe a claimed turn's queue wait (claim time minus acceptance time)."""
        self.queue_wait.observe(max(0.0, claimed_at - submitted_at))

    def recovered(self, report: RecoveryReport) -> None:
        """Count one dead worker's recovery (its turns, sessions and leases moved on)."""
        self.recoveries.inc()
        self.recovered_turns.inc(report.moved)
        self.recovered_leases.inc(report.leases_broken)
        self.ownership_moves.labels(reason="recovery").inc(report.sessions)

    # -- state read at scrape time ----------------------------------------------------

    def watch(
        self,
        *,
        cache_metrics: Callable[[], Mapping[str, Any]],
        turns_running: Callable[[], int],
        turns_in_flight: Callable[[], int],
        config_version: Callable[[], int],
        config_version_lost: Callable[[], int],
        registry_generation: Callable[[], int],
    ) -> None:
        """Read the cache, the executor and the config view at each scrape.

        Call once per worker; the callables must be cheap and thread-safe.
        """
        gauges: list[tuple[str, str, Callable[[], float]]] = [
            ("turns_running", "Turns whose handler runs now.", lambda: float(turns_running())),
            (
                "turns_waiting",
                "Turns claimed and waiting behind their session or for a slot.",
                lambda: float(max(0, turns_in_flight() - turns_running())),
            ),
            (
                "config_version",
                "Cluster config version this worker applied.",
                lambda: float(config_version()),
            ),
            (
                "config_version_lost",
                "Highest config version this worker applied before Redis reported a lower one "
                "(Redis lost its data); 0 when none, or once a config was pushed since.",
                lambda: float(config_version_lost()),
            ),
            (
                "registry_generation",
                "Tool registry generation this worker applied.",
                lambda: float(registry_generation()),
            ),
        ]
        for name, doc, read in gauges:
            Gauge(f"{PREFIX}_{name}", doc, registry=self.registry).set_function(read)
        self.registry.register(_CacheCollector(cache_metrics))


class _CacheCollector(Collector):
    """``AgentCache.metrics()`` as Prometheus families, read at scrape time."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def describe(self) -> list[Any]:
        return []  # families are only known at collect time; no description needed

    def collect(self) -> Iterator[Any]:
        m = self._read()
        yield _counter("cache_hits", "Checkouts that reused a cached agent.", m.get("hits", 0))
        yield _counter("cache_misses", "Checkouts that had to build an agent.", m.get("misses", 0))
        evictions = CounterMetricFamily(
            f"{PREFIX}_cache_evictions",
            "Agents that left the cache, by cause (cap, idle, memory, signature, config_bust, "
            "...).",
            labels=["cause"],
        )
        raw = m.get("evictions", {})
        for cause, count in sorted(raw.items() if isinstance(raw, Mapping) else []):
            evictions.add_metric([str(cause)], float(count))
        yield evictions
        for key, name, doc in (
            ("size", "cache_agents", "Agents cached now (pending builds included)."),
            ("cap", "cache_capacity", "The cache's cap (agents)."),
            ("running", "cache_agents_running", "Cached agents in a turn now."),
            ("memory_bytes", "cache_memory_bytes", "Estimated bytes held by cached agents."),
            (
                "rss_bytes",
                "memory_rss_bytes",
                "The worker's resident memory at its last memory-budget check (0: no budget).",
            ),
            (
                "rss_budget",
                "memory_budget_bytes",
                "The worker's memory budget, agent_cache_memory (0: none).",
            ),
        ):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(m.get(key, 0) or 0))


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=float(value or 0))
