"""A fork server for the Batch stand-in: one OS process per Batch job attempt, started cheaply.

AWS Batch starts a fresh container per job; the rehearsal starts a fresh process per attempt
that runs ``jobstream-worker``'s ``main`` with the attempt's environment and exits with its
status. Interpreting Python and importing boto3, psycopg and the worker for each of thousands of
jobs would cost about 0.85 s of CPU each on this machine (measured), so this process imports them
once and forks a child per attempt: the child is a separate process, with its
own environment, its own AWS clients and database connection, killable with SIGKILL, and its exit
status is the worker's. Nothing of an earlier job survives into the next: children are forked
from this process, which never runs a job itself.

Protocol (JSON lines): the parent writes ``{"id": ..., "env": {...}}`` to stdin; this process
answers ``{"id": ..., "pid": n}`` once the child runs and ``{"id": ..., "exit": code}`` when it
ends (``128 + signal`` when killed). An empty line or end of input stops it.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
from typing import Any


def _warm(region: str) -> None:
    import boto3
    import psycopg  # noqa: F401  (imported once here, for every child)

    import rehearsal.handlers  # noqa: F401

    _cache_client_classes()
    boto3.setup_default_session()
    for service in ("ssm", "cloudwatch", "rds"):
        boto3.client(service, region_name=region)  # fills botocore's caches


def _cache_client_classes() -> None:
    """botocore builds a client's class (one method per API operation, about 60 ms of CPU for
    RDS's 170 operations) anew for every client it creates. The class depends only on the
    service's model, so it is built once here and inherited by every child; each child still
    creates its own client instances, with their own credentials, endpoints and connections."""
    import botocore.client

    build = getattr(botocore.client.ClientCreator, "_create_client_class")  # noqa: B009
    built: dict[tuple[str, str], type] = {}

    def cached(self: Any, service_name: str, service_model: Any) -> type:
        key = (service_name, service_model.api_version)
        if key not in built:
            built[key] = build(self, service_name, service_model)
        return built[key]

    setattr(botocore.client.ClientCreator, "_create_client_class", cached)  # noqa: B010


def _child(environ: dict[str, str], log_path: str | None) -> None:
    from jobstream.worker import cli

    os.environ.clear()
    os.environ.update(environ)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    out = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        code = cli.main([])
    except SystemExit as stop:
        code = int(stop.code or 0)
    except BaseException:
        code = 1
    os._exit(code)


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    log_path = os.environ.get("JOBSTREAM_REHEARSAL_JOB_LOG")
    _warm(region)
    _send({"ready": True})
    running: dict[int, str] = {}
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ)
    stdin_open = True
    while stdin_open or running:
        if stdin_open and selector.select(timeout=0.005 if running else 0.1):
            line = sys.stdin.readline()
            if not line.strip():
                stdin_open = False
            else:
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    _child(request["env"], log_path)
                running[pid] = request["id"]
                _send({"id": request["id"], "pid": pid})
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            job = running.pop(pid, None)
            if job is not None:
                code = os.waitstatus_to_exitcode(status)
                _send({"id": job, "exit": 128 - code if code < 0 else code})
    return 0


if __name__ == "__main__":
    sys.exit(main())
