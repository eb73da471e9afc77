"""Errors: each a clear message on stderr, a distinct exit code, never a traceback."""

from __future__ import annotations

import json
import socket
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from ops.errors import EXIT_CODES
from tests.ops.conftest import REGION, STACK, Seeder

Run = Any


def _closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_credentials_exit_3(
    aws_env: None, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    # Nothing may leave the machine even if a credential were found somewhere.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_local_port()}")
    result = run("status", "--stack", STACK)
    assert result.code == 3
    assert "no usable AWS credentials for ssm:GetParameter" in result.err
    assert "Traceback" not in result.err
    assert "hint: set AWS_PROFILE" in result.err


def test_unreachable_endpoint_exit_3(
    aws_env: None, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_local_port()}")
    result = run("preflight", "--stack", STACK, "--to-phase", "2", "--json")
    assert result.code == 3
    assert "cannot reach AWS for ssm:GetParameter" in result.err
    assert result.json() == {
        "error": {
            "kind": "no-aws-access",
            "message": result.json()["error"]["message"],
            "hint": "check the network, proxy and region (--region)",
        },
        "exit_code": 3,
    }


def test_never_deployed_stack_exit_5(account: Seeder, run: Run) -> None:
    result = run("status", "--stack", STACK)
    assert result.code == 5
    assert (
        "stack 'dev' is not deployed in us-east-1: SSM parameter /jobstream/dev/routing does not exist"
        in result.err
    )


def test_unknown_stack_is_a_usage_error(account: Seeder, run: Run) -> None:
    result = run("preflight", "--stack", "nosuch", "--to-phase", "2")
    assert result.code == 2
    assert "no stack 'nosuch'" in result.err


def test_invalid_routing_document_is_a_usage_error(account: Seeder, run: Run) -> None:
    account.client("ssm").put_parameter(
        Name="/jobstream/dev/routing", Value=json.dumps({"phase": 9}), Type="String"
    )
    result = run("status", "--stack", STACK)
    assert result.code == 2
    assert "is not a valid routing document" in result.err


def test_access_denied_exit_4_names_the_action(
    aws_env: None, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto enforces IAM after the first N requests: an operator allowed only ssm:GetParameter
    is refused at the first SQS call."""
    with mock_aws():
        seeder = Seeder(STACK)

        @set_initial_no_auth_action_count(6)
        def scenario() -> Any:
            seeder.routing(1)  # 1 request
            iam = boto3.client("iam", region_name=REGION)
            iam.create_user(UserName="operator")  # 2
            iam.put_user_policy(  # 3
                UserName="operator",
                PolicyName="routing-only",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}
                        ],
                    }
                ),
            )
            key = iam.create_access_key(UserName="operator")["AccessKey"]  # 4
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            monkeypatch.delenv("AWS_SESSION_TOKEN")
            return run("preflight", "--stack", STACK, "--to-phase", "2", "--json")

        result = scenario()
    assert result.code == 4, result.err
    assert result.err.startswith("error: AWS denied rds:Describe")
    assert "is not authorized to perform" in result.err
    assert result.json()["error"]["kind"] == "access-denied"


def test_exit_codes_are_distinct_and_documented() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6]
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in doc, f"docs/operations.md lacks exit code {code}"
