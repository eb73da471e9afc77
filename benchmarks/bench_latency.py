"""End-to-end latency of the two routes, publish -> result applied, at a steady publish rate, in
one run (not a timed test): the number behind the migration trigger "need < 1 second processing
latency".

    .venv/bin/python -m benchmarks.bench_latency [--seconds 30] [--sqs-rate 5] [--kafka-rate 100]
        [--json]

It runs the rehearsal's engine without faults and without gates (``rehearsal.engine``, the
stack's own resources from the dev plan, real processes): phase 3, where every job is applied
by the SQS route (the pipe stand-in, one ``jobstream-worker`` process per job, forked; the Kafka
copies are only verified) while the consumer service starts and joins its group, then phase 4,
where every job takes the Kafka route (the consumer service's ``jobstream-worker`` processes),
so the Kafka figure is the steady state, not the consumers' start. The
latency of a job is the time from its envelope's publish stamp to the commit of its result.

The SQS figure is local: AWS Batch takes tens of seconds to start a Fargate task (not modelled
here), so on AWS the SQS route is far slower than this; the Kafka route's figure is what the
consumer, the broker and the database add, on a 2-core machine shared with everything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rehearsal.config import RehearsalConfig
from rehearsal.engine import Rehearsal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_latency", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="time on each route")
    parser.add_argument("--sqs-rate", type=float, default=5.0, help="jobs per second on SQS")
    parser.add_argument("--kafka-rate", type=float, default=100.0, help="jobs per second on Kafka")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config = RehearsalConfig(
        steps=(3, 4),
        step_seconds=args.seconds,
        sqs_rate=args.sqs_rate,
        kafka_rate=args.kafka_rate,
        faults=False,
        gates=False,
        producers=1,
        consumers=3,
    )
    report = Rehearsal(config).run()
    latency = report["summary"]["latency_ms"]
    doc = {
        "seconds_per_route": args.seconds,
        "rates": {"sqs": args.sqs_rate, "kafka": args.kafka_rate},
        "latency_ms": latency,
        "lost": report["summary"]["lost"],
        "kafka_p99_under_1s": latency.get("kafka", {}).get("p99", float("inf")) < 1000,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for route in ("sqs", "kafka"):
            v = latency.get(route)
            if v:
                print(
                    f"{route:5} {doc['rates'][route]:6.1f} jobs/s  p50 {v['p50']:8.1f} ms  "
                    f"p99 {v['p99']:8.1f} ms  ({v['jobs']} jobs)"
                )
        print(f"lost {doc['lost']}; Kafka p99 under 1 s: {doc['kafka_p99_under_1s']}")
    return 0 if doc["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
