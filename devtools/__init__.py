"""Development tools for picu-endotype; never part of the product or its image.

The demo, the sandbox FHIR server runner and the demo EHR that signs client JWTs. Benchmarks and
end-to-end tests use what this module exports and nothing deeper.
"""

from __future__ import annotations

from devtools.bench import (
    LoadResult,
    Served,
    SourceTree,
    child_pids,
    closed_loop,
    compared_trees,
    cpu_seconds,
    export_revision,
    latency_percentile,
    loopback_settings,
    rss_kib,
    served,
    served_cpu_seconds,
    settings_toml,
    working_tree,
)
from devtools.demo import ASSESSMENT_EXTENSION, DEMO_PATIENTS, DemoPatient, render_card
from devtools.ehr import DemoEhr, build_prefetch, call_hook, discover, hook_request
from devtools.latency_fhir import LatencyFhir
from devtools.sandbox_fhir import (
    LOOPBACK,
    SEKMET_BIN_ENV,
    SandboxFhir,
    SandboxUnavailable,
    free_port,
    load_resources,
    sekmet_binary,
    transaction_bundle,
)
from devtools.service import running_service, stop_process, wait_for_health, write_service_config

__all__ = [
    "latency_percentile",
    "compared_trees",
    "ASSESSMENT_EXTENSION",
    "DEMO_PATIENTS",
    "LOOPBACK",
    "SEKMET_BIN_ENV",
    "DemoEhr",
    "DemoPatient",
    "LatencyFhir",
    "LoadResult",
    "Served",
    "SourceTree",
    "SandboxFhir",
    "SandboxUnavailable",
    "build_prefetch",
    "call_hook",
    "child_pids",
    "closed_loop",
    "cpu_seconds",
    "discover",
    "export_revision",
    "free_port",
    "hook_request",
    "load_resources",
    "render_card",
    "rss_kib",
    "running_service",
    "sekmet_binary",
    "served",
    "served_cpu_seconds",
    "loopback_settings",
    "settings_toml",
    "stop_process",
    "transaction_bundle",
    "wait_for_health",
    "working_tree",
    "write_service_config",
]
