"""Operator commands: the `jobstream` command line."""
