"""Commands against an AWS endpoint that answers every call with a throttling error: the
account did not answer, which is a cannot-tell stop (exit 1, one JSON object with --json), not
"not deployed" (exit 5) and not a traceback. The endpoint is a local HTTP server on 127.0.0.1
that returns the error body botocore parses for the JSON and query protocols."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ops import cli
from ops.errors import EXIT_CHECK_FAILED

THROTTLED = b'{"__type":"com.amazonaws#ThrottlingException","message":"Rate exceeded"}'


class _Throttling(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-query-error", "Throttling;Sender")
        self.send_header("Content-Length", str(len(THROTTLED)))
        self.end_headers()
        self.wfile.write(THROTTLED)

    do_GET = do_POST  # noqa: N815 (http.server's name)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def throttling_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the answer is the same on every retry
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "command", ["status", "preflight --to-phase 4", "parked", "triggers", "adopt"]
)
def test_a_throttled_account_is_a_cannot_tell_stop_with_one_json_error(
    throttling_endpoint: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    name, *rest = command.split()
    code = cli.main([name, "--stack", "dev", *rest, "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_CHECK_FAILED, f"{command}: exit {code}, {out or err}"
    document = json.loads(out)
    assert document["exit_code"] == EXIT_CHECK_FAILED
    assert document["error"]["kind"] == "cannot-tell", document
    assert "Throttling" in document["error"]["message"]
    assert "Traceback" not in err
