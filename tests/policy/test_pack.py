"""The pack's entry point as the Pulumi CLI runs it: a gRPC analyzer on a local port.

``pulumi preview --policy-pack policy`` starts ``policy/__main__.py``, reads the port it prints
and calls the Analyzer service; these tests do the same, without the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy.rules import POLICIES, RDS_INSTANCE, SG_INGRESS_RULE

PACK_DIR = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {
        **os.environ,
        "PULUMI_PROJECT": "jobstream",
        "PULUMI_STACK": "prod",
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": "{}",
    }
    # The CLI runs the pack from its own directory.
    process = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"],
        cwd=PACK_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the pack printed {port!r}; stderr: {process.stderr.read()!r}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(props)
    return s


def _analyze(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, type_: str, props: dict[str, Any]
) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(
        type=type_,
        properties=_struct(props),
        urn=f"urn:pulumi:prod::jobstream::{type_}::subject",
        name="subject",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=True),
    )
    return list(analyzer.Analyze(request).diagnostics)


def test_pack_announces_every_policy_as_mandatory(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "jobstream-guardrails"
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in POLICIES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_pack_rejects_ingress_from_the_internet(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    (diagnostic,) = _analyze(analyzer, SG_INGRESS_RULE, {"cidrIpv4": "0.0.0.0/0"})
    assert diagnostic.policyName == "no-open-ingress"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "admits 0.0.0.0/0" in diagnostic.message


def test_pack_knows_prod_from_the_stack_name(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    props = {"publiclyAccessible": False, "storageEncrypted": True, "deletionProtection": False}
    (diagnostic,) = _analyze(analyzer, RDS_INSTANCE, props)
    assert diagnostic.policyName == "rds-deletion-protection-in-prod"
