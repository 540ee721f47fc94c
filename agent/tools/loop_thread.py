"""An asyncio event loop in one daemon thread, driven from synchronous code.

The MCP SDK is asynchronous while tool handlers are plain functions called
from the agent's thread; :class:`LoopThread` bridges the two. Coroutines are
submitted with ``asyncio.run_coroutine_threadsafe`` and waited for with a
timeout; stopping cancels what is still pending, shuts down async generators
and the default executor, and closes the loop, so nothing warns at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from cluster.errors import ToolError

_T = TypeVar("_T")


class LoopThread:
    """Runs one event loop in a daemon thread until :meth:`stop`.

    Args:
        name: the thread's name (shows up in thread dumps).
    """

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True until :meth:`stop` has been called."""
        return self._loop.is_running() and not self._loop.is_closed()

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def submit(self, coro: Coroutine[Any, Any, _T], timeout: float, what: str) -> _T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result.

        Raises:
            ToolError: the loop is stopped, the coroutine timed out (it is then
                cancelled) or was cancelled; ``what`` names it in the message.
            Exception: whatever the coroutine raised.
        """
        if self._loop.is_closed():
            coro.close()
            raise ToolError(f"{what} was not started: the event loop is stopped")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # closed between the check and the call
            coro.close()
            raise ToolError(f"{what} was not started: the event loop is stopped") from None
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolError(f"{what} got no answer within {timeout:g} s") from None
        except concurrent.futures.CancelledError:
            raise ToolError(f"{what} was cancelled (the event loop is stopping)") from None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the loop (cancelling pending work) and join the thread. Idempotent."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=timeout)


__all__ = ["LoopThread"]
