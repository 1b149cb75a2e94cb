"""Process CPU and memory, read with psutil for the gauges in metrics.py."""

from __future__ import annotations

import threading
import time

import psutil

# Shorter windows make the CPU figure jump between two close collections
# (the OTLP reader and a /metrics scrape both trigger the callbacks).
MIN_CPU_WINDOW_S = 1.0


class ProcessSampler:
    """CPU percent since the previous sample (at least ``MIN_CPU_WINDOW_S`` ago).

    ``psutil.Process.cpu_percent`` would restart its window at every call, so a
    second reader would see the share of a few milliseconds.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._last_at = time.monotonic()
        self._last_cpu_s = self._cpu_seconds()
        self._cpu_percent = 0.0

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def cpu_percent(self) -> float:
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._last_at
            if elapsed >= MIN_CPU_WINDOW_S:
                cpu_s = self._cpu_seconds()
                self._cpu_percent = 100.0 * (cpu_s - self._last_cpu_s) / elapsed
                self._last_at, self._last_cpu_s = now, cpu_s
            return self._cpu_percent

    def rss_bytes(self) -> float:
        return float(self._process.memory_info().rss)

    def memory_percent(self) -> float:
        return float(self._process.memory_percent())
