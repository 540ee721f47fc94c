"""Figure 3: prompt-cache economics of the cluster under change, against the baselines.

Every scenario runs ``sessions x turns`` conversations (one round = one turn of
every session, sent at once) through the provider simulator, whose prompt
cache and prices follow each provider's documentation; its counters are
cleared before each run, so a run pays for its own cold start. Scenarios:

- ``stable``: 4 workers throughout;
- ``scale out 3->4``: a 4th worker joins after half the rounds;
- ``drain 1 of 4``: one worker drains (SIGTERM) after half the rounds;
- ``non-busting push``: a config change agents need not be rebuilt for;
- ``max_tokens push``: a cache-busting change of a request parameter
  (``model.max_tokens``): every agent is rebuilt, from the session's stored
  frozen prompt, so the provider's cache keeps hitting;
- ``prompt push``: a change that rewrites the prompt
  (``agent.ephemeral_system_prompt``): every agent is rebuilt on a new prompt,
  so every session pays one uncached prefix; compared with the in-process
  ideal under the same push (``in-process ideal + prompt push``);
- ``worker crash``: one worker is killed (SIGKILL) with a round in flight;
- ``long session, compression``: ``model.context_length`` and
  ``compression.*`` set so that every session's prompt passes the threshold
  halfway through the run (:func:`compression_config`, from the prompt sizes
  the in-process ideal measured in this run); compared with the three
  baselines compressing under the same config.

Baselines, on the same simulator and turns: the in-process ideal, rebuild
per request, and stateless workers (4 rq workers on one queue).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.compression import CompressionSettings
from agent.simulator import ProviderSimulator
from cluster.connection import connect
from cluster.errors import AgentClusterError
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.bench.baselines import (
    AgentShape,
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
from coordinator.ingress import Coordinator, TurnHandle

__all__ = [
    "COMPRESSING",
    "MODELS",
    "PROMPT_PUSH_IDEAL",
    "SCENARIOS",
    "CostRun",
    "compression_config",
    "measure_economics",
]

MODELS = {"openai": "gpt-5", "anthropic": "claude-sonnet-4-5"}
"""The model priced per provider (``agent.providers.pricing``): list prices."""

ENDPOINT_NAMES = {"openai": "bench-openai", "anthropic": "bench-anthropic"}

BASELINES = ("in-process ideal", "rebuild per request", "stateless workers")
PROMPT_PUSH_IDEAL = "in-process ideal + prompt push"
"""The in-process ideal under the prompt push: what the ``prompt push`` scenario is held to."""
COMPRESSING = "compression"
"""The group of the runs that compress (the scenario and its three baselines)."""
PUSHED_PROMPT = "Answer in one short paragraph, and name the number you were asked about."
"""The ephemeral prompt the prompt push sets (it becomes part of every system prompt)."""
TURN_TIMEOUT = 120.0
COMPRESSION_THRESHOLD = 0.75
PROTECT_LAST_N = 1


def compression_config(first_prompt: int, growth: float, turns: int) -> CompressionSettings:
    """Compression settings under which a session whose prompt starts at ``first_prompt``
    tokens and grows by ``growth`` a turn passes the threshold halfway through ``turns``.

    The first compression falls on turn ``max(turns // 2, protect_last_n + 1)`` (0-based:
    there must be a turn before the protected ones to summarise); the target (what a
    compressed prompt aims at) lies halfway between the first prompt and the threshold.
    """
    crossing = max(turns // 2, PROTECT_LAST_N + 1)
    # The decision at turn k reads the prompt the provider counted at turn k - 1 plus an
    # estimate of the reply and the new message (about half a turn's growth and more).
    trigger = first_prompt + growth * (crossing - 1 + 0.3)
    context_length = max(1, round(trigger / COMPRESSION_THRESHOLD))
    # A compressed prompt aims a turn's growth below the trigger.
    target = max(first_prompt, trigger - growth) / context_length
    return CompressionSettings(
        context_length=context_length,
        threshold=COMPRESSION_THRESHOLD,
        target_ratio=round(min(target, COMPRESSION_THRESHOLD - 0.05), 3),
        protect_last_n=PROTECT_LAST_N,
    )


def _describe(settings: CompressionSettings | None) -> str:
    if settings is None:
        return "compression off"
    return (
        f"model.context_length {settings.context_length:,}, compression.threshold "
        f"{settings.threshold:g}, target_ratio {settings.target_ratio:g}, "
        f"protect_last_n {settings.protect_last_n}"
    )


def _config_section(settings: CompressionSettings) -> dict[str, Any]:
    return {
        "enabled": True,
        "threshold": settings.threshold,
        "target_ratio": settings.target_ratio,
        "protect_last_n": settings.protect_last_n,
    }


@dataclass(frozen=True)
class CostRun:
    """One scenario (or baseline) run on one provider.

    ``group`` is ``compression`` for the runs that compress, which ``note`` describes.
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
    compressions: int = 0
    group: str = ""
    note: str = ""

    @property
    def turns_lost(self) -> int:
        """Turns submitted and never answered."""
        return self.turns - self.answered

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results."""
        return {**self.__dict__, "turns_lost": self.turns_lost}


def _text(session: int, turn: int) -> str:
    return f"session {session}, message {turn}: tell me something about the number {turn * 7}"


def _long_text(session: int, turn: int) -> str:
    """A message of about 250 tokens (a pasted page of notes): a session that grows fast."""
    lines = [
        f"note {turn}.{i} of session {session}: the reading at station {i * 13 % 97} was "
        f"{(turn * 31 + i * 17) % 1000} units, logged by shift {(turn + i) % 3} for later review."
        for i in range(10)
    ]
    return f"session {session}, message {turn}: keep these notes in mind.\n" + "\n".join(lines)


def _text_of(group: str) -> Callable[[int, int], str]:
    return _long_text if group == COMPRESSING else _text


def _prompt_of(figures: TurnFigures) -> int:
    return figures.input_tokens + figures.cache_read_tokens + figures.cache_write_tokens


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
        self.compression: CompressionSettings | None = None

    def calibrate(self) -> None:
        """Set the compression scenario's window from two turns of one long session,
        measured without compression (the simulator's counters are cleared before a run)."""
        ideal = InProcessIdeal(self.endpoint, self.home)
        first, second = (_prompt_of(ideal.turn("calibration", _long_text(0, t))) for t in (0, 1))
        ideal.close()
        self.compression = compression_config(first, second - first, self.plan.cost_turns)

    def _config(self, name: str = "") -> dict[str, Any]:
        model: dict[str, Any] = {
            "endpoint": ENDPOINT_NAMES[self.provider],
            "default": MODELS[self.provider],
        }
        if name == "long session, compression" and self.compression is not None:
            model["context_length"] = self.compression.context_length
            return {"model": model, "compression": _config_section(self.compression)}
        return {"model": model}

    def _fresh(self) -> float:
        self.sim.clear_cache()
        self.sim.reset_stats()
        return time.monotonic()

    def _result(
        self,
        scenario: str,
        figures: list[TurnFigures],
        turns: int,
        started: float,
        group: str = "",
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
            compressions=sum(f.compressed for f in figures),
            group=group,
            note=_describe(self.compression) if group == COMPRESSING else "",
        )

    def in_process(
        self,
        baseline: InProcessIdeal | RebuildPerRequest,
        *,
        name: str | None = None,
        push: AgentShape | None = None,
        group: str = "",
    ) -> CostRun:
        """One in-process baseline; ``push`` reshapes its agents halfway, as the scenario's
        push does the workers'."""
        text = _text_of(group)
        started = self._fresh()
        figures: list[TurnFigures] = []
        for t in range(self.plan.cost_turns):
            if push is not None and t == self.plan.cost_turns // 2:
                baseline.reshape(push)
            figures.extend(
                baseline.turn(f"s{s}", text(s, t)) for s in range(self.plan.cost_sessions)
            )
        baseline.close()
        return self._result(name or baseline.name, figures, len(figures), started, group)

    def stateless(self, shape: AgentShape | None = None, group: str = "") -> CostRun:
        queue = f"stateless-{self.provider}{'-' if group else ''}{group[:4]}"
        client = connect(self.redis_url)
        baseline = StatelessWorkers(
            client, queue=queue, namespace=queue, endpoint=self.endpoint, shape=shape
        )
        procs = raw_rq_workers(self.redis_url, queue, 4, worker_env(self.home))
        try:
            baseline.warm_up(4)
            text = _text_of(group)
            started = self._fresh()
            figures: list[TurnFigures] = []
            for t in range(self.plan.cost_turns):
                jobs = [
                    baseline.submit(f"s{s}", text(s, t)) for s in range(self.plan.cost_sessions)
                ]
                figures.extend(baseline.result(job, TURN_TIMEOUT) for job in jobs)
        finally:
            stop_processes(procs)
            client.close()
        return self._result(baseline.name, figures, len(figures), started, group)

    def compressing_baselines(self) -> Iterator[CostRun]:
        """The three baselines under the compression scenario's config, each as it ends."""
        shape = AgentShape(compression=self.compression)
        yield self.in_process(InProcessIdeal(self.endpoint, self.home, shape), group=COMPRESSING)
        yield self.in_process(RebuildPerRequest(self.endpoint, self.home, shape), group=COMPRESSING)
        yield self.stateless(shape, group=COMPRESSING)

    def scenario(self, name: str, index: int) -> CostRun:
        namespace = f"cost{index}{self.provider[0]}"
        client = connect(self.redis_url)
        store = RedisVersionStore(client, Keyspace(namespace))
        config = self._config(name)
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
            group = COMPRESSING if name == "long session, compression" else ""
            try:
                started = self._fresh()
                figures, turns = self._rounds(
                    coordinator, _text_of(group), lambda: self._event(name, fleet, store, config)
                )
            finally:
                coordinator.close()
                client.close()
        return self._result(name, figures, turns, started, group)

    def _event(
        self, name: str, fleet: WorkerFleet, store: RedisVersionStore, config: dict[str, Any]
    ) -> None:
        if name == "scale out 3->4":
            fleet.start("w4")
        elif name == "drain 1 of 4":
            fleet.drain("w2")
        elif name == "non-busting push":
            store.publish_config({**config, "agent": {"max_iterations": 12}}, author="bench")
        elif name == "max_tokens push":
            store.publish_config(
                {**config, "model": {**config["model"], "max_tokens": 2048}}, author="bench"
            )
        elif name == "prompt push":
            store.publish_config(
                {**config, "agent": {"ephemeral_system_prompt": PUSHED_PROMPT}}, author="bench"
            )

    def _rounds(
        self,
        coordinator: Coordinator,
        text: Callable[[int, int], str],
        event: Callable[[], None],
    ) -> tuple[list[TurnFigures], int]:
        figures: list[TurnFigures] = []
        turns = 0
        for t in range(self.plan.cost_turns):
            if t == self.plan.cost_turns // 2:
                event()
            handles = [
                coordinator.submit_async(f"s{s}", text(s, t))
                for s in range(self.plan.cost_sessions)
            ]
            turns += len(handles)
            figures.extend(_answered(handles))
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
                    figures.extend(_answered(handles))
            finally:
                coordinator.close()
        return self._result("worker crash", figures, turns, started)


def _answered(handles: list[TurnHandle]) -> list[TurnFigures]:
    """The figures of the turns answered; a lost turn (an error, no answer) has none."""
    figures = []
    for handle in handles:
        try:
            reply = handle.result(timeout=TURN_TIMEOUT)
        except AgentClusterError:
            continue
        if reply.raw.get("error"):
            continue
        figures.append(
            TurnFigures.of(
                reply.raw.get("usage") or {},
                agent_built=not reply.cache_hit,
                compressed=bool(reply.raw.get("compressed")),
            )
        )
    return figures


def measure_economics(
    plan: BenchPlan, *, redis_url: str, home: Path, progress: Progress
) -> list[CostRun]:
    """Run every baseline and scenario on every provider of ``plan``."""
    runs: list[CostRun] = []
    with ProviderSimulator() as sim:
        for provider in plan.providers:
            runner = _Runner(plan, sim, redis_url, home, provider)
            runner.calibrate()
            runs.append(runner.in_process(InProcessIdeal(runner.endpoint, home)))
            progress.step(f"cost {provider}: in-process ideal")
            runs.append(runner.in_process(RebuildPerRequest(runner.endpoint, home)))
            progress.step(f"cost {provider}: rebuild per request")
            runs.append(runner.stateless())
            progress.step(f"cost {provider}: stateless workers")
            for name in plan.scenarios:
                index = SCENARIOS.index(name)
                if name == "prompt push":
                    pushed = AgentShape(ephemeral_prompt=PUSHED_PROMPT)
                    ideal_pushed = InProcessIdeal(runner.endpoint, home)
                    runs.append(
                        runner.in_process(ideal_pushed, name=PROMPT_PUSH_IDEAL, push=pushed)
                    )
                    progress.step(f"cost {provider}: {PROMPT_PUSH_IDEAL}")
                if name == "long session, compression":
                    for run in runner.compressing_baselines():
                        runs.append(run)
                        progress.step(f"cost {provider}: {run.scenario}, compressing")
                if name == "worker crash":
                    runs.append(runner.crash(index))
                else:
                    runs.append(runner.scenario(name, index))
                progress.step(f"cost {provider}: {name}")
    return runs
