"""Unit tests of the provider simulator and the reply policy."""
