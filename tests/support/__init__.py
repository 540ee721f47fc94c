"""Helpers and fixtures shared by test directories (fleets, gateways, queue shortcuts, cache
inspection)."""
