"""`picu-endotype serve`: run the CDS Hooks service under gunicorn."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from cds_service.logs import GunicornLogger, configure_logging
from cds_service.settings import Settings, load_settings
from cds_service.worker import hook_worker_class, prepare_heap_for_fork

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)

# Path without query string (%(U)s), never %(r)s, headers or the Authorization value. Every
# field is quoted and escaped by GunicornLogger, so a path holding a line break stays one line.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


class GunicornApplication(BaseApplication):
    """Gunicorn running one already-built Flask app with options from our settings."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Hand our options to gunicorn's config."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """The WSGI app gunicorn serves."""
        return self.application


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` options; each overrides the settings file and environment."""
    parser.add_argument("--config", metavar="FILE", help="settings TOML file")
    parser.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default from settings: 8080)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from `--config` and the environment, with the command-line overrides on top."""
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "workers")
        if getattr(args, name, None) is not None
    }
    return load_settings(getattr(args, "config", None), **overrides)


def _mark_worker_dead(_arbiter: Any, worker: Any) -> None:
    """gunicorn `child_exit`: a dead worker's live samples leave the aggregate."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """Gunicorn options for `settings`: bind, threaded workers with request read deadlines, logs
    without query strings or tokens, no control socket."""
    return {
        "child_exit": _mark_worker_dead,
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": hook_worker_class(
            settings.header_timeout_seconds, settings.body_timeout_seconds
        ),
        "threads": settings.threads,
        "control_socket_disable": True,
        "accesslog": "-",
        "errorlog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": GunicornLogger,
        "loglevel": settings.log_level.lower(),
        "timeout": 30,
        "limit_request_field_size": 16384,  # room for a large signed JWT header
    }


def prepare_metrics_directory() -> Path | None:
    """A fresh directory for every worker's metric samples, named before prometheus is imported.

    prometheus-client chooses its multiprocess mode when it is first imported, so `serve` sets
    PROMETHEUS_MULTIPROC_DIR before importing the app. A directory given in the environment is
    emptied (samples of an earlier run must not count); otherwise a temporary one is made. When
    the library was imported before (serve called from Python), each worker reports its own.
    """
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        logger.warning("metrics: prometheus_client already imported; workers are not aggregated")
        return None
    given = os.environ.get(MULTIPROC_ENV)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="picu-metrics-"))
    if given:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def start_metrics_listener(settings: Settings) -> None:
    """Serve every worker's aggregated metrics on the separate metrics port, from the master."""
    from prometheus_client import start_http_server

    from cds_service.metrics import registry

    if settings.metrics.port is None:
        return
    start_http_server(settings.metrics.port, addr=settings.metrics.host, registry=registry())
    logger.info("metrics on http://%s:%d/metrics", settings.metrics.host, settings.metrics.port)


def run(args: argparse.Namespace) -> int:
    """Load settings, refuse unsafe development mode, migrate, and serve until stopped."""
    configure_logging("INFO")
    try:
        settings = settings_from_args(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"picu-endotype serve: {error}", file=sys.stderr)
        return 2
    prepare_metrics_directory()
    from cds_service.auth import DevModeNotAllowed, assert_dev_mode_safe

    try:
        assert_dev_mode_safe(settings, settings.host)
    except DevModeNotAllowed as error:
        print(f"picu-endotype serve: {error}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    from cds_service.app import create_app
    from cds_service.storage import SchemaNotCurrent

    try:
        app = create_app(settings)  # migrates the database here, before workers fork
    except SchemaNotCurrent as error:
        print(f"picu-endotype serve: {error}", file=sys.stderr)
        return 2
    start_metrics_listener(settings)
    logger.info(
        "serving %s on %s:%d with %d workers (scorer: %s)",
        settings.public_base_url,
        settings.host,
        settings.port,
        settings.workers,
        settings.scorer,
    )
    prepare_heap_for_fork()
    GunicornApplication(app, gunicorn_options(settings)).run()
    return 0
