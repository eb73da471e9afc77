"""A local stand-in for the ECS service: 1..N ``jobstream-worker`` processes in service mode (the
installed console script, exactly as the image runs it), with the task definition's environment,
restarted when they die, as the ECS scheduler replaces a stopped task; SIGTERM to stop them, as
ECS does before its stop timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = Path(sys.executable).parent / "jobstream-worker"
RESTART_DELAY_SECONDS = 1.0


@dataclass
class ServiceCounters:
    started: int = 0
    killed: int = 0
    exits: dict[int, int] = field(default_factory=dict)
    stop_seconds: list[float] = field(default_factory=list)


class ServiceStandIn:
    def __init__(self, environ: Mapping[str, str], tasks: int, log_path: Path) -> None:
        self._environ = dict(environ)
        self._tasks = tasks
        self._log = log_path.open("a")
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * tasks
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.counters = ServiceCounters()
        self._supervisor = threading.Thread(target=self._supervise, name="ecs", daemon=True)

    def start(self) -> ServiceStandIn:
        for slot in range(self._tasks):
            self._launch(slot)
        self._supervisor.start()
        return self

    def _launch(self, slot: int) -> None:
        proc = subprocess.Popen(
            [str(WORKER)], env=self._environ, stdout=self._log, stderr=self._log
        )
        with self._lock:
            self._procs[slot] = proc
            self.counters.started += 1

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for slot in range(self._tasks):
                with self._lock:
                    proc = self._procs[slot]
                if proc is not None and proc.poll() is not None and not self._stop.is_set():
                    with self._lock:
                        self.counters.exits[proc.returncode] = (
                            self.counters.exits.get(proc.returncode, 0) + 1
                        )
                        self._procs[slot] = None
                    threading.Timer(RESTART_DELAY_SECONDS, self._relaunch, args=(slot,)).start()

    def _relaunch(self, slot: int) -> None:
        if not self._stop.is_set():
            self._launch(slot)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def kill_random(self, rng: Any) -> int | None:
        """SIGKILL one running task at a random moment; its pid or None."""
        pids = self.pids()
        if not pids:
            return None
        pid = rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        with self._lock:
            self.counters.killed += 1
        return pid

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._supervisor.join(5)
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        started = time.monotonic()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            self.counters.stop_seconds.append(time.monotonic() - started)
            self.counters.exits[proc.returncode] = self.counters.exits.get(proc.returncode, 0) + 1
        self._log.close()
