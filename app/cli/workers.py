"""`pizza serve --workers N`: N processes serving one listening socket, supervised here.

uvicorn's own supervisor stops when a worker fails to start, but then exits 0 (and older
releases restart such a worker forever), so a process manager told to restart the
service on failure never hears of it. This one exits 1 when a worker stops before it
served, after stopping the others; replaces a worker that dies after it started; and on
SIGINT or SIGTERM stops every worker gracefully (a second signal stops them at once).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

log = logging.getLogger("app")

# How often the supervisor looks at its workers when none has exited (a worker's exit
# wakes it at once).
LOOK_S = 0.5

# A worker: serves on the socket, sets the event once it serves, returns when told to stop.
WorkerMain = Callable[[socket.socket, Event], None]


class _Worker:
    def __init__(self, context: multiprocessing.context.SpawnContext) -> None:
        self.started = context.Event()
        self.process: BaseProcess | None = None


def supervise(count: int, sock: socket.socket, target: WorkerMain) -> int:
    """Run ``count`` workers of ``target`` until a signal or a failed start: 0 after a
    signal, 1 when a worker stopped before it served."""
    # Spawned, not forked: each worker starts from a clean interpreter, as uvicorn's do.
    context = multiprocessing.get_context("spawn")
    workers = [_Worker(context) for _ in range(count)]
    signals = 0
    failed = False

    def stop_all(_signum: int = 0, _frame: FrameType | None = None) -> None:
        nonlocal signals
        signals += 1
        for worker in workers:
            if worker.process is not None and worker.process.exitcode is None:
                assert worker.process.pid is not None
                # Each signal is passed on: a worker's second one stops it at once.
                os.kill(worker.process.pid, signal.SIGTERM)

    def start(worker: _Worker) -> None:
        worker.started.clear()
        worker.process = context.Process(target=target, args=(sock, worker.started))
        worker.process.start()

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            start(worker)
        pids = [w.process.pid for w in workers if w.process]
        log.info("started %d workers, pids %s", count, pids)
        while True:
            running = [w.process for w in workers if w.process and w.process.exitcode is None]
            if not running and (signals or failed):
                return 1 if failed else 0
            wait([p.sentinel for p in running], timeout=LOOK_S)
            for worker in workers:
                process = worker.process
                if process is None or process.exitcode is None or signals or failed:
                    continue
                if not worker.started.is_set():
                    log.error(
                        "worker %d stopped before it served (exit code %s): stopping the others",
                        process.pid,
                        process.exitcode,
                    )
                    failed = True
                    stop_all()
                    signals = 0  # the stop was ours, not an operator's
                else:
                    log.warning(
                        "worker %d exited with code %s: starting another",
                        process.pid,
                        process.exitcode,
                    )
                    start(worker)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
