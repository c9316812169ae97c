"""`picu-endotype serve`: run the CDS Hooks service under gunicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from cds_service.auth import DevModeNotAllowed, assert_dev_mode_safe
from cds_service.logs import GunicornLogger, configure_logging
from cds_service.settings import Settings, load_settings

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


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """Gunicorn options for `settings`: bind, workers, logs without query strings or tokens."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "accesslog": "-",
        "errorlog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": GunicornLogger,
        "loglevel": settings.log_level.lower(),
        "timeout": 30,
        "limit_request_field_size": 16384,  # room for a large signed JWT header
    }


def run(args: argparse.Namespace) -> int:
    """Load settings, refuse unsafe development mode, and serve until stopped."""
    configure_logging("INFO")
    try:
        settings = settings_from_args(args)
        assert_dev_mode_safe(settings, settings.host)
    except (DevModeNotAllowed, FileNotFoundError, ValueError) as error:
        print(f"picu-endotype serve: {error}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    from cds_service.app import create_app

    app = create_app(settings)
    logger.info(
        "serving %s on %s:%d with %d workers (scorer: %s)",
        settings.public_base_url,
        settings.host,
        settings.port,
        settings.workers,
        settings.scorer,
    )
    GunicornApplication(app, gunicorn_options(settings)).run()
    return 0
