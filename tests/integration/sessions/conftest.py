"""Fixtures of the session-command tests: worker processes and a slow provider simulator."""

from tests.support.fleet_fixtures import slow_model, workers

__all__ = ["slow_model", "workers"]
