"""The benchmark's load client counts every request, its errors and its latency percentiles."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pytest_httpserver import HTTPServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "hook_latency", ROOT / "benchmarks/hook_latency.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_percentiles_come_from_the_measured_latencies(bench: ModuleType) -> None:
    result = bench.LoadResult("x", 100, 0, 2.0, tuple(float(ms) for ms in range(1, 101)))
    assert result.requests_per_second == 50
    assert result.percentile(0.5) == 51
    assert result.percentile(0.99) == 100


def test_drive_sends_every_request_and_counts_non_200_as_errors(
    bench: ModuleType, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/ok").respond_with_json({"status": "ok"})
    httpserver.expect_request("/missing").respond_with_data("", status=404)
    load = [("GET", "/ok", None, {})] * 30 + [("GET", "/missing", None, {})] * 5
    result = bench.drive(httpserver.port, load, threads=3, time_cap=60)
    assert result.completed == 35
    assert result.errors == 5
    assert len(httpserver.log) == 35


def test_report_gives_ratios_against_the_trivial_endpoint(bench: ModuleType) -> None:
    floor = bench.LoadResult("trivial endpoint", 10, 0, 1.0, (1.0,) * 10)
    hook = bench.LoadResult("hook, complete prefetch", 5, 0, 1.0, (4.0,) * 5)
    text = bench.report([floor, hook], threads=2)
    assert "hook, complete prefetch / trivial endpoint: throughput x0.50, p50 x4.0" in text
