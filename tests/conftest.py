"""Session-wide test settings: no test may reach AWS or the instance metadata service."""

from __future__ import annotations

import os

import pytest

from infra.plan import PlanSet

# Set before any boto3 client exists: dummy credentials, a fixed region, no IMDS probing.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def plans() -> PlanSet:
    """Offline plans per (stack, phase), computed once per test session."""
    return PlanSet()
