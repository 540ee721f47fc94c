"""The worker: local agent cache, turn execution, the worker process.

Importing this package loads nothing: import the part you need
(``worker.cache``, ``worker.process``), so that code reading one worker
module (a test, a status tool) does not start the whole worker stack.
"""

__all__: list[str] = []
