"""Reusable Pulumi components, one file per building block."""
