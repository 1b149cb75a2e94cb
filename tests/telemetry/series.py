"""Received metrics as Prometheus series, and promtool evaluating rules and queries on them.

Two paths, as the backends of docs/telemetry.md#export store them:

- ``scraped``: pages of ``/metrics`` as Prometheus scrapes them (``job`` from the scrape
  config, ``instance`` the target's address);
- ``pushed``: OTLP export requests translated as Grafana Cloud (Mimir) and Prometheus'
  OTLP receiver store them: ``job`` = ``service.name`` (``service.namespace/`` first when
  set), ``instance`` = ``service.instance.id``, dots in names and attribute keys become
  underscores, the unit becomes a suffix, monotonic sums end in ``_total``, histograms
  become ``_bucket``/``_sum``/``_count``. Pushed series get no staleness marker.

``promtool test rules`` starts its clock at 0 and steps by a fixed interval, so the
series are placed on that clock: sample times, and the values of the heartbeat
timestamp, shifted by the same origin (and scaled, when a test runs at small real
intervals standing for the production ones).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.telemetry.promql import RULE_FILES

HEARTBEAT = "pizza_service_heartbeat_timestamp_seconds"
_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}
Labels = tuple[tuple[str, str], ...]


@dataclass
class Series:
    """Samples by series (name and labels), each a (wall-clock seconds, value) pair."""

    samples: dict[Labels, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, name: str, labels: Mapping[str, str], at: float, value: float) -> None:
        key = (("__name__", name), *sorted(labels.items()))
        self.samples[key].append((at, value))

    def names(self) -> set[str]:
        return {dict(key)["__name__"] for key in self.samples}

    def instances(self) -> set[str]:
        return {dict(key).get("instance", "") for key in self.samples}


def scraped(pages: Iterable[tuple[float, str]], job: str, instance: str) -> Series:
    """``/metrics`` pages, each with the time it was scraped at."""
    series = Series()
    for at, page in pages:
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                labels = {**sample.labels, "job": job, "instance": instance}
                series.add(sample.name, labels, at, sample.value)
    return series


def _value(attribute: KeyValue) -> str:
    kind = attribute.value.WhichOneof("value")
    return str(getattr(attribute.value, kind)) if kind else ""


def _labels(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {a.key.replace(".", "_"): _value(a) for a in attributes}


def prometheus_name(metric: Metric) -> str:
    """The name Mimir's OTLP translation gives ``metric``."""
    name = metric.name.replace(".", "_")
    unit = "" if metric.unit.startswith("{") else _UNITS.get(metric.unit, metric.unit)
    if unit and not name.endswith(unit):
        name = f"{name}_{unit}"
    kind = metric.WhichOneof("data")
    if kind == "sum" and metric.sum.is_monotonic:
        name += "_total"
    return name


def _add_metric(series: Series, metric: Metric, resource: dict[str, str]) -> None:
    name = prometheus_name(metric)
    kind = metric.WhichOneof("data")
    if kind in ("gauge", "sum"):
        data = metric.gauge if kind == "gauge" else metric.sum
        if kind == "sum":
            assert metric.sum.aggregation_temporality == (
                AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            ), f"{metric.name}: Prometheus stores cumulative sums"
        for point in data.data_points:
            value = point.as_double if point.HasField("as_double") else float(point.as_int)
            labels = {**_labels(point.attributes), **resource}
            series.add(name, labels, point.time_unix_nano / 1e9, value)
    elif kind == "histogram":
        for hist in metric.histogram.data_points:
            labels = {**_labels(hist.attributes), **resource}
            at = hist.time_unix_nano / 1e9
            running = 0
            bounds = [*hist.explicit_bounds, float("inf")]
            for bound, count in zip(bounds, hist.bucket_counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                series.add(f"{name}_bucket", {**labels, "le": le}, at, running)
            series.add(f"{name}_count", labels, at, hist.count)
            series.add(f"{name}_sum", labels, at, hist.sum)


def pushed(requests: Iterable[Any]) -> Series:
    """OTLP ExportMetricsServiceRequests, as Grafana Cloud stores them."""
    series = Series()
    for request in requests:
        for resource_metrics in request.resource_metrics:
            attrs = {a.key: _value(a) for a in resource_metrics.resource.attributes}
            namespace = attrs.get("service.namespace")
            job = f"{namespace}/{attrs['service.name']}" if namespace else attrs["service.name"]
            resource = {"job": job, "instance": attrs.get("service.instance.id", "")}
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    _add_metric(series, metric, resource)
    return series


@dataclass(frozen=True)
class Clock:
    """Wall-clock seconds onto promtool's clock: ``origin`` is 0, ``step`` real seconds are
    one ``interval_s`` of the test file (``interval_s / step`` is the time scale)."""

    origin: float
    step: float
    interval_s: int

    @property
    def scale(self) -> float:
        return self.interval_s / self.step

    def index(self, at: float) -> int:
        return max(0, round((at - self.origin) / self.step))

    def virtual(self, at: float) -> float:
        """``at`` in promtool seconds."""
        return (at - self.origin) * self.scale


def _selector(key: Labels) -> str:
    labels = dict(key)
    name = labels.pop("__name__")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def input_series(series: Series, clock: Clock) -> list[dict[str, str]]:
    """promtool's ``input_series``: a value per step, ``_`` where none was received."""
    out = []
    for key, samples in series.samples.items():
        heartbeat = dict(key)["__name__"] == HEARTBEAT
        steps: dict[int, float] = {}
        for at, value in sorted(samples):
            steps[clock.index(at)] = clock.virtual(value) if heartbeat else value
        values = " ".join(_number(steps[i]) if i in steps else "_" for i in range(max(steps) + 1))
        out.append({"series": _selector(key), "values": values})
    return out


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/test does)")
    return path


def run_promtool_tests(
    tmp_path: Path,
    series: Series,
    clock: Clock,
    expr_tests: list[dict[str, Any]],
    name: str,
) -> None:
    """``promtool test rules`` of the shipped rules over ``series``; fails with its output."""
    test_file = tmp_path / f"{name}.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(path) for path in RULE_FILES],
                "evaluation_interval": f"{clock.interval_s}s",
                "tests": [
                    {
                        "name": name,
                        "interval": f"{clock.interval_s}s",
                        "input_series": input_series(series, clock),
                        "promql_expr_test": expr_tests,
                    }
                ],
            },
            sort_keys=False,
            width=1 << 20,
        )
    )
    done = subprocess.run(
        [promtool(), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{test_file}:\n{done.stdout}{done.stderr}"


def at(virtual_s: float, interval_s: int) -> str:
    """A promtool eval_time on the evaluation grid, at or after ``virtual_s``."""
    steps = -(-int(virtual_s) // interval_s)
    return f"{steps * interval_s}s"
