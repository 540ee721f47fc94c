"""Figure 3: prompt-cache economics of the cluster under change, against the baselines.

Every scenario runs ``sessions x turns`` conversations (one round = one turn of
every session, sent at once) through the provider simulator, whose prompt
cache and prices follow each provider's documentation; its counters are
cleared before each run, so a run pays for its own cold start. Scenarios:

- ``stable``: 4 workers throughout;
- ``scale out 3->4``: a 4th worker joins after half the rounds;
- ``drain 1 of 4``: one worker drains (SIGTERM) after half the rounds;
- ``non-busting push``: a config change agents need not be rebuilt for;
- ``busting push``: a cache-busting change (``model.max_tokens``): every agent is rebuilt;
- ``worker crash``: one worker is killed (SIGKILL) with a round in flight;
- ``compression``: not run here yet (its ideal would have to compress too);
  ``benchmarks/bench_long_session.py`` measures compression against none and
  naive truncation.

Baselines, on the same simulator and turns: the in-process ideal, rebuild
per request, and stateless workers (4 rq workers on one queue).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.simulator import ProviderSimulator
from cluster.connection import connect
from cluster.errors import AgentClusterError
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.bench.baselines import (
    InProcessIdeal,
    ModelEndpoint,
    RebuildPerRequest,
    StatelessWorkers,
    TurnFigures,
    raw_rq_workers,
    stop_processes,
)
from coordinator.bench.hot_path import worker_env
from coordinator.bench.infra import WorkerFleet
from coordinator.bench.plan import SCENARIOS, BenchPlan, Progress
from coordinator.ingress import Coordinator

__all__ = ["MODELS", "SCENARIOS", "CostRun", "measure_economics"]

MODELS = {"openai": "gpt-5", "anthropic": "claude-sonnet-4-5"}
"""The model priced per provider (``agent.providers.pricing``): list prices."""

ENDPOINT_NAMES = {"openai": "bench-openai", "anthropic": "bench-anthropic"}

BASELINES = ("in-process ideal", "rebuild per request", "stateless workers")
TURN_TIMEOUT = 120.0


@dataclass(frozen=True)
class CostRun:
    """One scenario (or baseline) run on one provider.

    ``pending`` names what a scenario waits for when it could not run on this code.
    """

    provider: str
    scenario: str
    turns: int
    answered: int
    agents_built: int
    cost_usd: float
    cache_read_share: float
    prompt_tokens: int
    seconds: float
    pending: str | None = None

    @property
    def turns_lost(self) -> int:
        """Turns submitted and never answered."""
        return self.turns - self.answered

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results."""
        return {**self.__dict__, "turns_lost": self.turns_lost}


def _text(session: int, turn: int) -> str:
    return f"session {session}, message {turn}: tell me something about the number {turn * 7}"


class _Runner:
    """Runs one provider's baselines and scenarios against one simulator."""

    def __init__(
        self, plan: BenchPlan, sim: ProviderSimulator, redis_url: str, home: Path, provider: str
    ) -> None:
        self.plan = plan
        self.sim = sim
        self.redis_url = redis_url
        self.home = home
        self.provider = provider
        base = sim.openai_base_url if provider == "openai" else sim.anthropic_base_url
        self.endpoint = ModelEndpoint(provider=provider, model=MODELS[provider], base_url=base)
        self.endpoints_env = json.dumps(
            {ENDPOINT_NAMES[provider]: {"provider": provider, "base_url": base}}
        )

    def _config(self) -> dict[str, Any]:
        return {
            "model": {"endpoint": ENDPOINT_NAMES[self.provider], "default": MODELS[self.provider]}
        }

    def _fresh(self) -> float:
        self.sim.clear_cache()
        self.sim.reset_stats()
        return time.monotonic()

    def _result(
        self, scenario: str, figures: list[TurnFigures], turns: int, started: float
    ) -> CostRun:
        totals = self.sim.stats()["providers"][self.provider]
        return CostRun(
            provider=self.provider,
            scenario=scenario,
            turns=turns,
            answered=len(figures),
            agents_built=sum(f.agent_built for f in figures),
            cost_usd=float(totals["cost_usd"]),
            cache_read_share=float(totals["cache_hit_share"]),
            prompt_tokens=int(totals["prompt_tokens"]),
            seconds=time.monotonic() - started,
        )

    def in_process(self, baseline: InProcessIdeal | RebuildPerRequest) -> CostRun:
        started = self._fresh()
        figures = [
            baseline.turn(f"s{s}", _text(s, t))
            for t in range(self.plan.cost_turns)
            for s in range(self.plan.cost_sessions)
        ]
        baseline.close()
        return self._result(baseline.name, figures, len(figures), started)

    def stateless(self) -> CostRun:
        queue = f"cost-stateless-{self.provider}"
        client = connect(self.redis_url)
        baseline = StatelessWorkers(client, queue=queue, namespace=queue, endpoint=self.endpoint)
        procs = raw_rq_workers(self.redis_url, queue, 4, worker_env(self.home))
        try:
            baseline.warm_up(4)
            started = self._fresh()
            figures: list[TurnFigures] = []
            for t in range(self.plan.cost_turns):
                jobs = [
                    baseline.submit(f"s{s}", _text(s, t)) for s in range(self.plan.cost_sessions)
                ]
                figures.extend(baseline.result(job, TURN_TIMEOUT) for job in jobs)
        finally:
            stop_processes(procs)
            client.close()
        return self._result(baseline.name, figures, len(figures), started)

    def scenario(self, name: str, index: int) -> CostRun:
        if name == "compression":
            return CostRun(
                self.provider,
                name,
                0,
                0,
                0,
                0.0,
                0.0,
                0,
                0.0,
                pending="not in the suite yet: benchmarks/bench_long_session.py",
            )
        namespace = f"cost{index}{self.provider[0]}"
        client = connect(self.redis_url)
        store = RedisVersionStore(client, Keyspace(namespace))
        config = self._config()
        store.publish_config(config, author="bench", source="bench")
        first = ["w1", "w2", "w3"] if name == "scale out 3->4" else ["w1", "w2", "w3", "w4"]
        with WorkerFleet(
            redis_url=self.redis_url,
            namespace=namespace,
            home=self.home,
            endpoints=self.endpoints_env,
            concurrency=16,
        ) as fleet:
            fleet.start(*first)
            coordinator = Coordinator(
                settings=ClusterSettings(redis_url=self.redis_url, namespace=namespace)
            )
            try:
                started = self._fresh()
                figures, turns = self._rounds(
                    coordinator, lambda: self._event(name, fleet, store, config)
                )
            finally:
                coordinator.close()
                client.close()
        return self._result(name, figures, turns, started)

    def _event(
        self, name: str, fleet: WorkerFleet, store: RedisVersionStore, config: dict[str, Any]
    ) -> None:
        if name == "scale out 3->4":
            fleet.start("w4")
        elif name == "drain 1 of 4":
            fleet.drain("w2")
        elif name == "non-busting push":
            store.publish_config({**config, "agent": {"max_iterations": 12}}, author="bench")
        elif name == "busting push":
            store.publish_config(
                {**config, "model": {**config["model"], "max_tokens": 2048}}, author="bench"
            )

    def _rounds(
        self, coordinator: Coordinator, event: Callable[[], None]
    ) -> tuple[list[TurnFigures], int]:
        figures: list[TurnFigures] = []
        turns = 0
        for t in range(self.plan.cost_turns):
            if t == self.plan.cost_turns // 2:
                event()
            handles = [
                coordinator.submit_async(f"s{s}", _text(s, t))
                for s in range(self.plan.cost_sessions)
            ]
            turns += len(handles)
            for handle in handles:
                try:
                    reply = handle.result(timeout=TURN_TIMEOUT)
                except AgentClusterError:
                    continue  # a lost turn: counted as submitted, not answered
                if reply.raw.get("error"):
                    continue
                figures.append(
                    TurnFigures.of(reply.raw.get("usage") or {}, agent_built=not reply.cache_hit)
                )
        return figures, turns

    def crash(self, index: int) -> CostRun:
        namespace = f"cost{index}{self.provider[0]}"
        client = connect(self.redis_url)
        RedisVersionStore(client, Keyspace(namespace)).publish_config(
            self._config(), author="bench"
        )
        client.close()
        with WorkerFleet(
            redis_url=self.redis_url,
            namespace=namespace,
            home=self.home,
            endpoints=self.endpoints_env,
            concurrency=16,
        ) as fleet:
            fleet.start("w1", "w2", "w3", "w4")
            coordinator = Coordinator(
                settings=ClusterSettings(redis_url=self.redis_url, namespace=namespace)
            )
            try:
                started = self._fresh()
                figures: list[TurnFigures] = []
                turns = 0
                for t in range(self.plan.cost_turns):
                    handles = [
                        coordinator.submit_async(f"s{s}", _text(s, t))
                        for s in range(self.plan.cost_sessions)
                    ]
                    if t == self.plan.cost_turns // 2:
                        fleet.kill("w2")  # with this round queued and running
                    turns += len(handles)
                    for handle in handles:
                        try:
                            reply = handle.result(timeout=TURN_TIMEOUT)
                        except AgentClusterError:
                            continue
                        figures.append(
                            TurnFigures.of(
                                reply.raw.get("usage") or {}, agent_built=not reply.cache_hit
                            )
                        )
            finally:
                coordinator.close()
        return self._result("worker crash", figures, turns, started)


def measure_economics(
    plan: BenchPlan, *, redis_url: str, home: Path, progress: Progress
) -> list[CostRun]:
    """Run every baseline and scenario on every provider of ``plan``."""
    runs: list[CostRun] = []
    with ProviderSimulator() as sim:
        for provider in plan.providers:
            runner = _Runner(plan, sim, redis_url, home, provider)
            runs.append(runner.in_process(InProcessIdeal(runner.endpoint, home)))
            progress.step(f"cost {provider}: in-process ideal")
            runs.append(runner.in_process(RebuildPerRequest(runner.endpoint, home)))
            progress.step(f"cost {provider}: rebuild per request")
            runs.append(runner.stateless())
            progress.step(f"cost {provider}: stateless workers")
            for name in plan.scenarios:
                index = SCENARIOS.index(name)
                if name == "worker crash":
                    runs.append(runner.crash(index))
                else:
                    runs.append(runner.scenario(name, index))
                progress.step(f"cost {provider}: {name}")
    return runs
