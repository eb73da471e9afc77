"""Entry point of the policy pack: ``pulumi preview --policy-pack policy``.

The CLI runs this file with ``policy/`` as the working directory; the repository root goes on
``sys.path`` so that the rules import as ``policy.rules`` here and in the tests alike.
``PolicyPack(...)`` starts the analyzer's gRPC server and blocks until the engine stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.rules import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="jobstream guardrails: encryption, private networking, least privilege, "
    "log retention and protection of stateful resources in prod.",
)
