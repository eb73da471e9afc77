"""Pulumi CrossGuard policy pack (guardrails)."""
