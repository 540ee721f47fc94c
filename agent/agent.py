"""AIAgent: one conversation's LLM agent, built once and reused turn after turn.

Building an agent (SDK client, tool registry, system prompt) is expensive, and
the provider's prompt cache only pays off while the prompt prefix stays
byte-identical. So an agent freezes its system prompt and tool schemas on the
first turn and sends that very prefix on every later turn; the worker's agent
cache keeps agents alive between messages.

Two ways to let go of an agent:

- :meth:`AIAgent.release_clients` (soft): close the LLM HTTP client and drop the
  in-memory transcript. The session's background processes, sandbox and
  persisted tool state stay: a new agent for the same session id finds them.
- :meth:`AIAgent.close` (hard, session end): also tear down everything keyed by
  the session's task id.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from agent.activity import init_for_turn
from agent.compression import (
    PROMPT_TOKENS_FIELD,
    CompressionSettings,
    effective_history,
    plan_compression,
    summary_message,
    summary_request,
)
from agent.messages import Message, TurnResult, Usage, assistant_message, tool_message, user_message
from agent.prompt import FrozenPrompt, build_system_prompt, read_context_files, read_skills
from agent.providers import (
    DEFAULT_MAX_TOKENS,
    ModelRequest,
    ModelResponse,
    Provider,
    RetryPolicy,
    call_with_retries,
    make_provider,
)
from agent.steering import may_take_messages
from agent.tools import ToolContext, ToolEnvironment, ToolRegistry, default_registry, memory_notes
from agent.watchdog import watchdog
from cluster.errors import ProviderError, ProviderUnavailable

log = logging.getLogger("agent")


class _Endpoint(TypedDict):
    """The arguments of :func:`make_provider` for the endpoint the agent calls now."""

    provider: str
    api_key: str | None
    base_url: str | None
    api_mode: str | None
    timeout: float


DEFAULT_INACTIVITY_TIMEOUT = 1800.0


ToolProgressCallback = Callable[[str, Mapping[str, Any]], None]
StepCallback = Callable[[int, Message], None]
TextCallback = Callable[[str], None]


class AIAgent:
    """The per-session agent the cluster caches.

    Construction makes no network call but builds the SDK client, so
    ``agent.client`` is set right away. ``task_id`` equals ``session_id``: tool
    state, sandbox and background processes are all keyed by it.

    Per-turn state (``tool_progress_callback``, ``step_callback``,
    ``stream_delta_callback``, ``status_callback``, ``reasoning_config``,
    ``max_iterations``) are plain attributes, set between turns on a cached
    agent without rebuilding it. ``step_callback(iteration, message)`` sees
    every message the turn adds: each model reply, then each tool result.
    """

    def __init__(
        self,
        *,
        model: str = "offline-echo",
        api_key: str | None = None,
        base_url: str | None = None,
        provider: str = "offline",
        api_mode: str | None = None,
        session_id: str | None = None,
        platform: str = "cli",
        toolsets: Sequence[str] | None = None,
        ephemeral_system_prompt: str | None = None,
        reasoning_config: dict[str, Any] | None = None,
        max_iterations: int = 10,
        quiet_mode: bool = True,
        skip_context_files: bool = False,
        skip_memory: bool = False,
        user_id: str | None = None,
        tool_registry: ToolRegistry | None = None,
        tool_env: ToolEnvironment | None = None,
        frozen_prompt: FrozenPrompt | Mapping[str, Any] | None = None,
        inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        context_dir: Path | None = None,
        skills_dir: Path | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        request_timeout: float = 120.0,
        fallback: Mapping[str, Any] | None = None,
        compression: CompressionSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.provider_name = provider
        self.api_mode = api_mode
        self.base_url = base_url
        self.session_id = session_id or uuid.uuid4().hex
        self.task_id = self.session_id
        self.platform = platform
        self.user_id = user_id
        self.ephemeral_system_prompt = ephemeral_system_prompt
        self.quiet_mode = quiet_mode
        self.skip_context_files = skip_context_files
        self.skip_memory = skip_memory
        self.inactivity_timeout = inactivity_timeout
        self.max_tokens = max_tokens
        # None: the history grows until the provider refuses it (compression off).
        self.compression = compression
        self.context_dir = context_dir
        self.skills_dir = skills_dir
        self.tool_registry = tool_registry if tool_registry is not None else default_registry()
        self.tool_env = tool_env if tool_env is not None else ToolEnvironment.default()
        self.toolsets = (
            sorted(toolsets) if toolsets is not None else sorted(self.tool_registry.toolsets())
        )
        self._retry_policy = retry_policy or RetryPolicy()
        self._clock = clock
        self._provider_args: _Endpoint = {
            "provider": provider,
            "api_key": api_key,
            "base_url": base_url,
            "api_mode": api_mode,
            "timeout": request_timeout,
        }
        self._provider: Provider | None = make_provider(**self._provider_args)
        # A second endpoint used when the primary stays unavailable through its
        # retries: {"model", "provider", "api_key", "base_url", "api_mode"}.
        self._fallback = dict(fallback) if fallback else None
        self.fallback_active = False

        # Per-turn state, settable on a cached agent between turns.
        self.reasoning_config = reasoning_config
        self.max_iterations = max_iterations
        self.tool_progress_callback: ToolProgressCallback | None = None
        self.step_callback: StepCallback | None = None
        self.stream_delta_callback: TextCallback | None = None
        self.status_callback: TextCallback | None = None
        # New user messages to take into the running turn at a safe point (steer, collect).
        self.steer_callback: Callable[[], Sequence[str]] | None = None

        if isinstance(frozen_prompt, Mapping):
            frozen_prompt = FrozenPrompt.from_dict(frozen_prompt)
        self._frozen: FrozenPrompt | None = frozen_prompt
        self.cached_system_prompt: str | None = (
            frozen_prompt.system_prompt if frozen_prompt else None
        )

        self._transcript: list[Message] = []
        self._turn_lock = threading.Lock()
        self._interrupt = threading.Event()
        self._interrupt_reason: str | None = None
        self._closed = False
        self.is_running = False
        self.api_call_count = 0
        self.last_activity_ts: float | None = clock()
        self.last_activity_desc = "created"

    # -- the SDK client -------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The provider's SDK client, or None after :meth:`release_clients`."""
        return self._provider.client if self._provider is not None else None

    # -- system prompt ----------------------------------------------------------------

    def build_system_prompt(self) -> str:
        """Build the system prompt from its parts now (not frozen; see :meth:`frozen_prompt`)."""
        notes = [] if self.skip_memory else memory_notes(self.tool_env, self.task_id)
        context = (
            [] if self.skip_context_files else read_context_files(self.context_dir or Path.cwd())
        )
        return build_system_prompt(
            platform=self.platform,
            memory_notes=notes,
            skills=read_skills(self.skills_dir),
            context_files=context,
            ephemeral_prompt=self.ephemeral_system_prompt,
        )

    def frozen_prompt(self) -> FrozenPrompt:
        """The session's frozen prefix, built and frozen on first use."""
        if self._frozen is None:
            schemas = tuple(self.tool_registry.schemas(self.toolsets))
            self._frozen = FrozenPrompt(
                system_prompt=self.build_system_prompt(), tool_schemas=schemas
            )
            self.cached_system_prompt = self._frozen.system_prompt
        return self._frozen

    # -- activity and interrupts -------------------------------------------------------

    def init_turn(self, interrupt_depth: int = 0) -> None:
        """Reset per-turn counters (the rule: :func:`agent.activity.init_for_turn`)."""
        init_for_turn(self, interrupt_depth, clock=self._clock)

    def _touch(self, description: str) -> None:
        self.last_activity_ts = self._clock()
        self.last_activity_desc = description
        if self.status_callback is not None:
            self.status_callback(description)

    def interrupt(self, reason: str = "interrupted by user") -> None:
        """Stop the running turn at the next safe point; a stuck model call is aborted."""
        self._interrupt_reason = reason
        self._interrupt.set()
        if self.is_running and self._provider is not None:
            self._provider.abort()

    def check_inactivity(self) -> bool:
        """Interrupt the running turn when it has been quiet too long (the watchdog calls this)."""
        last = self.last_activity_ts
        if not self.is_running or last is None or self._clock() - last <= self.inactivity_timeout:
            return False
        log.warning(
            "session %s inactive for %.0fs (%s): interrupting",
            self.session_id,
            self._clock() - last,
            self.last_activity_desc,
        )
        self.interrupt(
            f"inactive for more than {self.inactivity_timeout:g}s (last: {self.last_activity_desc})"
        )
        return True

    # -- the turn ----------------------------------------------------------------------

    def run_conversation(
        self,
        message: str,
        history: Sequence[Message] | None = None,
        *,
        interrupt_depth: int = 0,
        on_loop_start: Callable[[], None] | None = None,
    ) -> TurnResult:
        """Run one turn: the tool loop, up to ``max_iterations`` model calls.

        Args:
            message: the user's text.
            history: the conversation so far as stored (the session store's
                append-only list: an earlier compression is applied to it, see
                :func:`agent.compression.effective_history`); when None the
                agent's in-memory transcript is used.
            interrupt_depth: > 0 when the turn re-enters after the user interrupted a
                stuck turn; the activity timestamp is then kept (see ``init_turn``).
            on_loop_start: called once the turn runs (``is_running``), after older
                interrupts were cleared and before the first model call: an
                :meth:`interrupt` from it stops this turn.

        With compression on, a prompt past its threshold first has its older
        turns summarised by a model call; the summary is then the first of the
        turn's new messages (what the session store appends) and the
        transcript continues on ``[summary] + last turns``.

        Returns:
            The final text, the messages this turn added, and usage.

        Raises:
            ProviderAuthError, ProviderBadRequest, ProviderUnavailable: the model
                could not be called; nothing of the turn is kept in the transcript.
        """
        with self._turn_lock:
            self._interrupt.clear()
            self._interrupt_reason = None
            self.init_turn(interrupt_depth)
            if history is not None:
                self._transcript = effective_history(history)
            self.is_running = True
            watchdog().watch(self)
            try:
                if on_loop_start is not None:
                    on_loop_start()
                sent, summary, usage = self._compressed(message)
                result = self._tool_loop(message, sent)
            finally:
                self.is_running = False
                watchdog().unwatch(self)
            # Only a turn that ran keeps the compressed transcript (it is committed with it).
            self._transcript = sent + result.new_messages
            if summary is not None:
                result.new_messages.insert(0, summary)
                result.compressed = int(summary["compaction"]["summarised"])
                usage.add(result.usage)
                result.usage = usage
            return result

    def _compressed(self, message: str) -> tuple[list[Message], Message | None, Usage]:
        """The history this turn sends: compressed first when past the threshold.

        Returns:
            The history, the summary message (None: not compressed) and the
            summary call's usage. A failed summary call leaves the history as
            it was (logged): the turn then runs uncompressed.
        """
        history = list(self._transcript)
        usage = Usage()
        if self.compression is None:
            return history, None, usage
        frozen = self.frozen_prompt()
        plan = plan_compression(
            self.compression,
            system=frozen.system_prompt,
            tools=frozen.tool_schemas,
            history=history,
            message=user_message(message),
        )
        if plan is None:
            return history, None, usage
        self._touch(f"compressing {len(plan.summarise)} messages")
        request = ModelRequest(
            model=self.model,
            system=frozen.system_prompt,
            tools=frozen.tool_schemas,
            messages=[*plan.summarise, summary_request(plan)],
            session_id=self.session_id,
            max_tokens=plan.budget,
        )
        try:
            response = self._call_model(request, stream=False)
        except ProviderError as exc:
            log.warning("session %s: compression failed, not compressed: %s", self.session_id, exc)
            return history, None, usage
        self.api_call_count += 1
        usage.add(response.usage)
        if not response.text:
            log.warning("session %s: the model wrote no summary; not compressed", self.session_id)
            return history, None, usage
        summary = summary_message(plan, response.text)
        return [summary, *plan.keep], summary, usage

    def _tool_loop(self, message: str, history: list[Message]) -> TurnResult:
        frozen = self.frozen_prompt()
        new: list[Message] = [user_message(message)]
        usage = Usage()
        tool_names = {schema["name"] for schema in frozen.tool_schemas}
        cut: Message | None = None
        taken_after_reply = False
        for iteration in range(1, self.max_iterations + 1):
            if self._interrupt.is_set():
                return self._interrupted(new, usage, iteration - 1)
            if not taken_after_reply:  # a safe point: before the next model call
                new.extend(self._take_messages(iteration))
            taken_after_reply = False
            request = ModelRequest(
                model=self.model,
                system=frozen.system_prompt,
                tools=frozen.tool_schemas,
                messages=history + new,
                session_id=self.session_id,
                reasoning=self.reasoning_config,
                max_tokens=self.max_tokens,
            )
            self._touch(f"calling model (iteration {iteration})")
            try:
                response = self._call_model(request)
            except ProviderError:
                if self._interrupt.is_set():
                    return self._interrupted(new, usage, iteration)
                raise
            self.api_call_count += 1
            usage.add(response.usage)
            reply = assistant_message(response.text, response.tool_calls or None)
            if self.compression is not None and response.usage.prompt_tokens > 0:
                # What the provider counted: the next turn's compression decision reads it.
                reply[PROMPT_TOKENS_FIELD] = response.usage.prompt_tokens
            new.append(reply)
            self._touch("model replied")
            if self.step_callback is not None:
                self.step_callback(iteration, reply)
            if not response.tool_calls:
                steered = self._take_messages(iteration + 1)  # a safe point: after a final reply
                if not steered:
                    return TurnResult(
                        text=response.text or "",
                        new_messages=new,
                        usage=usage,
                        iterations=iteration,
                    )
                new.extend(steered)
                taken_after_reply = True
                continue
            for call in response.tool_calls:
                stopped_before = self._interrupt.is_set()
                result = (
                    self._run_tool(call, tool_names)
                    if not stopped_before
                    else tool_message(
                        str(call["id"]), str(call["name"]), f"not run: {self._stop_reason()}"
                    )
                )
                new.append(result)
                if self.step_callback is not None:
                    self.step_callback(iteration, result)
                if self._interrupt.is_set() and not stopped_before:
                    cut = result  # the tool the stop cut short: its partial output is replied
            if self._interrupt.is_set():
                return self._interrupted(new, usage, iteration, cut_tool=cut)
        note = f"(stopped: reached max_iterations={self.max_iterations} without a final answer)"
        return TurnResult(text=note, new_messages=new, usage=usage, iterations=self.max_iterations)

    def _take_messages(self, next_iteration: int) -> list[Message]:
        """User messages sent while the turn runs, taken in now (``steer_callback``)."""
        callback = self.steer_callback
        if callback is None or not may_take_messages(
            next_iteration=next_iteration,
            max_iterations=self.max_iterations,
            stopped=self._interrupt.is_set(),
        ):
            return []
        taken = [user_message(text) for text in callback()]
        if taken:
            self._touch(f"took in {len(taken)} new message(s)")
        return taken

    def _call_model(self, request: ModelRequest, *, stream: bool = True) -> ModelResponse:
        """Call the model on the turn's own thread, with retries and the fallback endpoint.

        An interrupt aborts the call in flight (:meth:`Provider.abort` shuts
        its socket down, so the blocked read fails at once) and cuts a retry's
        backoff short; the turn then ends as interrupted.
        """
        provider = self._provider
        if provider is None:
            provider = self._provider = make_provider(**self._provider_args)
        on_delta = self.stream_delta_callback if stream else None
        try:
            return call_with_retries(
                lambda left: provider.complete(
                    request if left is None else replace(request, timeout=left),
                    on_delta=on_delta,
                    should_stop=self._interrupt.is_set,
                ),
                policy=self._retry_policy,
                provider=provider.name,
                stop=self._interrupt,
                sleep=self._interrupt.wait,
            )
        except ProviderUnavailable as exc:
            if self._interrupt.is_set() or not self._activate_fallback():
                raise
            log.warning(
                "session %s: %s unavailable (%s); switching to the fallback model %s",
                self.session_id,
                provider.name,
                exc,
                self.model,
            )
            return self._call_model(replace(request, model=self.model), stream=stream)

    def _activate_fallback(self) -> bool:
        """Switch this agent to its fallback endpoint (once); False when it has none."""
        if self._fallback is None or self.fallback_active:
            return False
        fallback = self._fallback
        self.fallback_active = True
        self.model = str(fallback.get("model") or self.model)
        self._provider_args = {
            "provider": fallback.get("provider", self._provider_args["provider"]),
            "api_key": fallback.get("api_key"),
            "base_url": fallback.get("base_url"),
            "api_mode": fallback.get("api_mode"),
            "timeout": self._provider_args["timeout"],
        }
        old, self._provider = self._provider, make_provider(**self._provider_args)
        if old is not None:
            old.close()
        return True

    def _run_tool(self, call: Mapping[str, Any], offered: set[str]) -> Message:
        name, arguments = str(call["name"]), dict(call.get("arguments") or {})
        if self.tool_progress_callback is not None:
            self.tool_progress_callback(name, arguments)
        if not self.quiet_mode:
            log.info("session %s: tool %s", self.session_id, name)
        self._touch(f"running tool {name}")
        if name not in offered:
            content = f"error: tool {name!r} is not available in this session"
        else:
            result = self.tool_registry.dispatch(
                name, arguments, ToolContext(self.task_id, self.tool_env, stopped=self._stop_reason)
            )
            content = result.content
        self._touch(f"tool {name} finished")
        return tool_message(str(call["id"]), name, content)

    def _stop_reason(self) -> str | None:
        """Why the running turn was stopped, or None while it may go on (tools poll this)."""
        if not self._interrupt.is_set():
            return None
        return self._interrupt_reason or "interrupted"

    def _interrupted(
        self, new: list[Message], usage: Usage, iterations: int, *, cut_tool: Message | None = None
    ) -> TurnResult:
        reason = self._interrupt_reason or "interrupted"
        text = f"(interrupted: {reason})"
        if cut_tool is not None:
            text += f"\n{cut_tool.get('name') or 'tool'}: {cut_tool.get('content') or ''}"
        return TurnResult(
            text=text,
            new_messages=new,
            usage=usage,
            interrupted=True,
            interrupt_reason=reason,
            iterations=iterations,
        )

    # -- memory and release ------------------------------------------------------------

    @property
    def transcript(self) -> list[Message]:
        """A copy of the in-memory conversation."""
        return list(self._transcript)

    def memory_estimate(self) -> int:
        """Approximate bytes this agent holds (transcript and frozen prefix)."""
        size = sum(len(str(m.get("content") or "")) + 64 for m in self._transcript)
        if self._frozen is not None:
            size += len(self._frozen.system_prompt) + 512 * len(self._frozen.tool_schemas)
        return size

    def release_clients(self) -> None:
        """SOFT release: close the LLM HTTP client and drop the in-memory transcript.

        Tool state, sandbox and background processes of the session are left alone.
        Idempotent. A later turn on this agent reopens a client.
        """
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.close()
        self._transcript = []

    def close(self) -> None:
        """HARD release at session end: also kill the session's processes, sandbox and state."""
        self.release_clients()
        if not self._closed:
            self._closed = True
            self.tool_env.teardown(self.task_id)

    def __repr__(self) -> str:  # never shows the api key
        return (
            f"AIAgent(session_id={self.session_id!r}, provider={self.provider_name!r}, "
            f"model={self.model!r}, client={'open' if self.client is not None else 'released'})"
        )
