"""The MSK IAM ``oauth_cb`` with fake credentials (no network): the token's expiry never
outlives the credentials that signed it (issue 12 defect 10).

aws-msk-iam-sasl-signer-python #48: the signer gives every token a fixed 900 s lifetime
(``DEFAULT_TOKEN_EXPIRY_SECONDS``), "we aren't factoring credential expiry into the token
expiration, instead just using a constant expiration"."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from jobstream.messaging.kafka import (
    CREDENTIAL_EXPIRY_MARGIN_SECONDS,
    NoCredentialsError,
    msk_iam_oauth_cb,
)

SIGNER_LIFETIME = 900


class FakeSession:
    """What the callback needs of a botocore session: ``get_credentials``."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def get_credentials(self) -> Any:
        return self.credentials


ISSUED: list[datetime] = []
"""The expiry of every credential set the fakes handed out, latest last."""


def refreshable(expires_in: float, access_key: str = "ASIAFAKEROLE") -> RefreshableCredentials:
    def metadata() -> dict[str, str]:
        expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
        ISSUED.append(expiry)
        return {
            "access_key": access_key,
            "secret_key": "fake-secret",
            "token": "fake-session-token",
            "expiry_time": expiry.isoformat(),
        }

    return RefreshableCredentials.create_from_metadata(metadata(), metadata, "fake-role")


def signed(token: str) -> dict[str, list[str]]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return parse_qs(urlsplit(url).query)


def call(credentials: Any) -> tuple[str, float]:
    callback = msk_iam_oauth_cb("eu-west-1", session_factory=lambda: FakeSession(credentials))
    return callback("ignored sasl.oauthbearer.config")


def test_token_expiry_is_capped_at_credentials_that_expire_before_the_signer_lifetime() -> None:
    credentials = refreshable(expires_in=11 * 60)  # past botocore's 10-minute mandatory refresh
    before = time.time()
    _token, expiry = call(credentials)
    cap = ISSUED[-1].timestamp() - CREDENTIAL_EXPIRY_MARGIN_SECONDS
    assert expiry == pytest.approx(cap, abs=1)
    assert expiry < before + SIGNER_LIFETIME


def test_token_keeps_the_signer_lifetime_when_credentials_outlive_it() -> None:
    before = time.time()
    _token, expiry = call(refreshable(expires_in=6 * 3600))
    assert before + SIGNER_LIFETIME - 2 <= expiry <= time.time() + SIGNER_LIFETIME


def test_static_credentials_keep_the_signer_lifetime() -> None:
    before = time.time()
    _token, expiry = call(Credentials("AKIAFAKESTATIC", "fake-secret"))
    assert before + SIGNER_LIFETIME - 2 <= expiry <= time.time() + SIGNER_LIFETIME


def test_the_token_is_signed_with_the_credentials_whose_expiry_caps_it() -> None:
    query = signed(call(refreshable(expires_in=3600, access_key="ASIAFAKEREFRESHED"))[0])
    assert query["X-Amz-Credential"][0].startswith("ASIAFAKEREFRESHED/")
    assert query["X-Amz-Security-Token"] == ["fake-session-token"]
    assert query["Action"] == ["kafka-cluster:Connect"]


def test_credentials_due_for_refresh_are_refreshed_before_signing() -> None:
    """botocore refreshes credentials within 10 minutes of expiry (mandatory refresh): the
    token is signed with the refreshed ones, and capped at their expiry."""
    calls: list[int] = []

    def metadata() -> dict[str, str]:
        calls.append(1)
        expiry = datetime.now(UTC) + timedelta(seconds=120 if len(calls) == 1 else 3600)
        return {
            "access_key": f"ASIAFAKE{len(calls)}",
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(metadata(), metadata, "fake")
    token, expiry = call(credentials)
    assert signed(token)["X-Amz-Credential"][0].startswith("ASIAFAKE2/")
    assert expiry > time.time() + 600


def test_no_credentials_is_a_clear_error() -> None:
    with pytest.raises(NoCredentialsError, match="no AWS credentials"):
        call(None)
