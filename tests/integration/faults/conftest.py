"""Fixtures of the fault tests: a fleet of worker processes and a slow provider simulator."""

from tests.support.fleet_fixtures import slow_model, workers

__all__ = ["slow_model", "workers"]
