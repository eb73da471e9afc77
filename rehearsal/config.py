"""The rehearsal's settings (standard library only: the command line reads them to register)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_STEPS: tuple[int, ...] = (1, 2, 3, 4, 3, 4, 3, 2, 3)
"""1 -> 2 -> 3 -> 4 -> 3 -> 4, then 3 -> 2 -> 3: every supported change but 2 -> 1 and 4 -> 5."""


@dataclass
class RehearsalConfig:
    stack: str = "dev"
    overrides: dict[str, str] = field(default_factory=dict)
    steps: tuple[int, ...] = DEFAULT_STEPS
    step_seconds: float = 15.0
    sqs_rate: float = 6.0
    """Jobs per second while SQS is the primary route (each is one Batch job process)."""
    kafka_rate: float = 160.0
    """Jobs per second while Kafka is the primary route."""
    producers: int = 2
    consumers: int | None = None
    """Consumer service tasks (default: the plan's desired count, at least 3)."""
    faults: bool = True
    seed: int = 7
    gate_timeout: float = 90.0
    """How long the operator waits for a phase change's gates: longer than the gates' one-minute
    windows (a job dead-lettered just before a change keeps "the dead-letter topic received
    nothing (1 min)" failing for that minute), with room for a consumer catching up."""
    drain_timeout: float = 90.0
    routing_ttl: float = 1.0
    outage_seconds: float = 4.0
    kafka_session_timeout_ms: int = 2000
    """The consumer tasks' group session timeout: the local broker takes about half of it to
    join a group, and a killed task's partitions wait that long for another one."""
    keep_workdir: bool = False
    gates: bool = True
    """Off only for the latency benchmark: phase changes without the preflight gates."""
