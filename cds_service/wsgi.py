"""WSGI entry point for `gunicorn cds_service.wsgi:app`; settings from file and environment."""

from __future__ import annotations

from cds_service.app import create_app
from cds_service.settings import load_settings

app = create_app(load_settings())
