"""``jobstream-worker``: run the team's handler as one AWS Batch job or as the Kafka consumer
service, with everything else read from the environment the stack sets."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence

from jobstream.contract import env
from jobstream.contract.exits import EXIT_REASONS, WorkerExit
from jobstream.worker.settings import WorkerConfigError, WorkerSettings
from jobstream.worker.stopping import Terminated, abandon_on_sigterm, outcome_known

log = logging.getLogger("jobstream.worker")

_VARIABLES = (
    (env.HANDLER, "module:function of the handler (set by the image)"),
    (env.RESULT_WRITER, "optional module:function writing the result in the ledger transaction"),
    (env.CONSUMER, "sqs (one Batch job, then exit) or kafka (the consumer service)"),
    (env.STACK, "stack name (the Stack dimension of the metrics)"),
    (env.REGION, "AWS region"),
    (env.ROUTING_PARAMETER, "SSM parameter holding the routing document"),
    (env.DB_HOST, "RDS Proxy endpoint"),
    (env.DB_PORT, f"database port (default {env.DB_PORT_DEFAULT})"),
    (env.DB_NAME, "database name"),
    (env.DB_USER, "database user, authenticated with an IAM token"),
    (env.DB_SSLMODE, f"require, verify-ca or verify-full (default {env.DB_SSLMODE_DEFAULT})"),
    (env.DB_SSLROOTCERT, "CA bundle path, or 'system' (default)"),
    (env.JOB_MESSAGE, "Batch job mode: the SQS message body (set by the pipe)"),
    (env.SQS_MESSAGE_ID, "Batch job mode: the SQS message id (set by the pipe)"),
    (env.METRICS, "cloudwatch (default) or off"),
    (env.LOG_LEVEL, "DEBUG, INFO (default), WARNING or ERROR"),
    (env.ROUTING_TTL, f"routing document cache, seconds (default {env.ROUTING_TTL_DEFAULT:g})"),
    (
        env.KAFKA_SESSION_TIMEOUT,
        f"consumer group session timeout, ms (default {env.KAFKA_SESSION_TIMEOUT_DEFAULT})",
    ),
    (
        env.KAFKA_MAX_POLL_INTERVAL,
        "longest processing of one message before the group reassigns it, ms (default "
        f"{env.KAFKA_MAX_POLL_INTERVAL_DEFAULT}; the stack sets jobTimeoutSeconds + "
        f"{env.KAFKA_POLL_MARGIN_SECONDS} s)",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    variables = "\n".join(f"  {name:<28} {what}" for name, what in _VARIABLES)
    exits = "\n".join(f"  {int(code):<3} {EXIT_REASONS[code]}" for code in WorkerExit)
    parser = argparse.ArgumentParser(
        prog="jobstream-worker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the ML handler of a jobstream service: one job from the SQS message AWS Batch "
            "was started for (JOBSTREAM_CONSUMER=sqs), or the Kafka consumer loop until SIGTERM "
            "(JOBSTREAM_CONSUMER=kafka). Results are applied exactly once through the "
            "idempotency ledger in PostgreSQL."
        ),
        epilog=f"environment:\n{variables}\n\nexit status:\n{exits}",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the environment and import the handler, then exit (no AWS calls)",
    )
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> WorkerExit:
    batch = environ.get(env.CONSUMER, "").strip() == env.CONSUMER_SQS
    if batch and not args.check:
        # First thing: as PID 1 the worker ignores a SIGTERM it has no handler for.
        abandon_on_sigterm()
    from jobstream.messaging.consumers import install_stop_signals
    from jobstream.worker.batch_job import run_batch_job
    from jobstream.worker.service import run_service
    from jobstream.worker.wiring import DependencyError, Wiring, one_line

    try:
        settings = WorkerSettings.from_environ(environ)
    except WorkerConfigError as exc:
        _configure_logging(str(environ.get(env.LOG_LEVEL, "INFO")).upper())
        log.error("%s", exc)
        return WorkerExit.CONFIG
    _configure_logging(settings.log_level)
    wiring = Wiring(settings, metrics_interval=None if batch else 10.0)
    try:
        if args.check:
            wiring.handler()
            wiring.result_writer()
            log.info("environment and handler %s are valid", settings.handler)
            return WorkerExit.OK
        if batch:
            return run_batch_job(wiring)
        stop = threading.Event()
        install_stop_signals(stop)
        return run_service(wiring, stop)
    except Terminated:
        log.error(
            "SIGTERM: AWS Batch stopped this job (its attempt timeout, a TerminateJob or a Spot "
            "reclaim) before its outcome was known; a transaction not committed is rolled back, "
            "and the ledger says whether the job was applied (exit %d)",
            WorkerExit.TERMINATED,
        )
        return WorkerExit.TERMINATED
    except WorkerConfigError as exc:
        log.error("%s", exc)
        return WorkerExit.CONFIG
    except DependencyError as exc:
        log.error("cannot reach %s (exit %d: retried)", exc, WorkerExit.TEMPORARY)
        return WorkerExit.TEMPORARY
    except Exception as exc:
        log.error("unexpected error: %s (exit %d)", one_line(exc), WorkerExit.TEMPORARY)
        return WorkerExit.TEMPORARY
    finally:
        outcome_known()  # whatever is returned is decided; SIGTERM no longer abandons it
        wiring.close_metrics()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(run(args, os.environ))


if __name__ == "__main__":
    sys.exit(main())
