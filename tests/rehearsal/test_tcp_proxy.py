"""The outage proxy: a cut refuses connections without giving its port away."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from rehearsal.servers import HOST, TcpProxy


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((HOST, 0))
    server.listen(8)
    yield server
    server.close()


def test_a_cut_proxy_refuses_connections_and_keeps_its_port(upstream: socket.socket) -> None:
    proxy = TcpProxy(target_port=upstream.getsockname()[1]).open()
    proxy.close()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, proxy.port), timeout=2)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other,
            pytest.raises(OSError, match="in use"),
        ):
            other.bind((HOST, proxy.port))  # another process asking for the port is refused
    finally:
        proxy.stop()


def test_a_reopened_proxy_forwards_on_the_same_port(upstream: socket.socket) -> None:
    proxy = TcpProxy(target_port=upstream.getsockname()[1]).open()
    port = proxy.port
    proxy.close()
    proxy.open()
    try:
        with socket.create_connection((HOST, port), timeout=2) as client:
            accepted, _ = upstream.accept()
            client.sendall(b"ping")
            assert accepted.recv(4) == b"ping"
            accepted.close()
    finally:
        proxy.stop()


def test_a_stopped_proxy_gives_its_port_up(upstream: socket.socket) -> None:
    proxy = TcpProxy(target_port=upstream.getsockname()[1]).open()
    proxy.close()
    proxy.stop()
    # The shut-down listener is released when its accept thread wakes: soon, not at once.
    deadline = time.monotonic() + 2
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            try:
                other.bind((HOST, proxy.port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.01)
