"""Helpers several test directories share (what only tests need stays out of the packages)."""
