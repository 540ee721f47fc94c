"""Helpers and fixtures shared by test directories (fleets, gateways, queues, cache inspection)."""
