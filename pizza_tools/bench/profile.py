"""`pizza bench --profile FILE.svg`: a py-spy flame graph of the service under the bench's load.

The same simulator, service and load generator as the bench (its own database, loopback
only); the service is recorded by py-spy while the load generator keeps it busy at
concurrency 32 on one route: `POST /api/order` (the order path) or `GET /api/order/menu`
(the per-request floor). py-spy is a separate program (`pip install py-spy`); it needs
permission to read another process's memory (root, or ptrace allowed).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from pizza_tools.bench.harness import open_shop
from pizza_tools.bench.load import LoadSpec
from pizza_tools.bench.plan import CONCURRENCY, FULL
from pizza_tools.bench.procs import BenchError
from pizza_tools.bench.runner import bench_setup

PROFILE_RATE_HZ = 250


async def profile(
    *, database_url: str, out: Path, seconds: float, route: str, telemetry: bool = False
) -> None:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("py-spy is not installed: pip install py-spy")
    async with bench_setup(FULL, database_url=database_url, redis_url=None) as bench:
        factory = await bench.start_factory()
        # With telemetry: exported to the bench's local sink, as its telemetry_on variant.
        exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": bench.sink.url} if telemetry else {}
        service = await bench.start_service("service", factory, settings=exporting)
        shop = await open_shop(service.url, bench.admin_password)
        target = bench.service_target(service, factory, shop)
        method = "POST"
        url = target.url
        if route == "menu":
            method, url = "GET", f"{service.url}/api/order/menu"
        spec = LoadSpec(
            url=url,
            body=target.body,
            headers=target.headers,
            concurrency=CONCURRENCY,
            window_s=seconds + 2.0,
            warmup_s=1.0,
            method=method,
            pids=target.pids(),
            # As the bench orders: each its own order (never "Pay" pressed again).
            distinct_orders=route == "order" and target.distinct_orders,
        )
        running = asyncio.create_task(bench.load.run(spec))
        await asyncio.sleep(1.0)  # the warm-up
        recorder = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(service.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(PROFILE_RATE_HZ),
            "--format",
            # FILE.txt: py-spy's collapsed stacks, one line per stack (for reading by tool)
            "raw" if out.suffix == ".txt" else "flamegraph",
            "--output",
            str(out),
            "--nonblocking",
            "--full-filenames",  # which package a frame is in, for reading by area
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await recorder.communicate()
        result = await running
        if recorder.returncode != 0:
            raise BenchError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        cpu = result.cpu_s.get("service", 0.0) * 1000 / max(result.requests, 1)
        print(
            f"{method} {route}: {result.per_s:.0f}/s at concurrency {CONCURRENCY}, "
            f"service CPU {cpu:.2f} ms per request, statuses {result.statuses}; "
            f"flame graph in {out}"
        )


def profile_command(
    *, database_url: str, out: Path, seconds: float, route: str, telemetry: bool = False
) -> int:
    if route not in ("order", "menu"):
        print("--route: order or menu", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            profile(
                database_url=database_url,
                out=out,
                seconds=seconds,
                route=route,
                telemetry=telemetry,
            )
        )
    except BenchError as error:
        print(f"profile failed: {error}", file=sys.stderr)
        return 1
    return 0
