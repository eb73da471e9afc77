"""Pulumi entry point (``main: infra/`` in Pulumi.yaml); the program lives in ``infra.stack``."""

from infra import config, stack

stack.build(config.load())
