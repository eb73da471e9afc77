"""Batch job mode: the one SQS message the pipe passed in ``JOBSTREAM_JOB_MESSAGE``, processed
through the ledger in the mode the routing gives the SQS route, then exit.

The exit status is what the job definition's retry strategy reads (``jobstream.contract.exits``):
a dependency failure (SSM, the database) exits ``TEMPORARY`` and AWS Batch runs the job again; a
poison message or a handler that fails on every in-process attempt exits ``POISON`` /
``HANDLER_FAILED`` and the job fails at once, to be captured with its message by the stack's
failed-jobs capture.
"""

from __future__ import annotations

import logging

from jobstream.contract import metrics as m
from jobstream.contract.env import CONSUMER_SQS
from jobstream.contract.exits import WorkerExit
from jobstream.messaging.consumers import JobProcessor, ProcessingError, SqsJobConsumer
from jobstream.messaging.envelope import Envelope, EnvelopeError
from jobstream.worker.stopping import outcome_known
from jobstream.worker.wiring import DependencyError, Wiring, one_line

log = logging.getLogger("jobstream.worker")


def run_batch_job(wiring: Wiring) -> WorkerExit:
    settings = wiring.settings
    message_id = settings.sqs_message_id or "?"
    try:
        envelope = SqsJobConsumer.parse(settings.job_message or "")
    except EnvelopeError as exc:
        outcome_known()
        log.error(
            "SQS message %s is not a valid envelope (poison, not retried): %s", message_id, exc
        )
        wiring.metrics().count(m.DEAD_LETTERED, Consumer=CONSUMER_SQS)
        return WorkerExit.POISON
    handler = wiring.handler()
    wiring.read_routing()
    ledger = wiring.ledger()
    try:
        processor = JobProcessor(CONSUMER_SQS, handler, ledger, wiring.metrics())
        outcome = SqsJobConsumer(wiring.routing(), processor).process(envelope)
    except ProcessingError as exc:
        outcome_known()
        log.error("%s (not retried; the failed-jobs capture keeps the message)", exc)
        wiring.metrics().count(m.DEAD_LETTERED, Consumer=CONSUMER_SQS)
        return WorkerExit.HANDLER_FAILED
    except Exception as exc:
        raise DependencyError(
            "database", f"while applying job {envelope.job_id}: {one_line(exc)}"
        ) from exc
    else:
        outcome_known()
    finally:
        ledger.close()
    _log_outcome(envelope, message_id, outcome.value)
    return WorkerExit.OK


def _log_outcome(envelope: Envelope, message_id: str, outcome: str) -> None:
    log.info("job %s (SQS message %s): %s", envelope.job_id, message_id, outcome)
