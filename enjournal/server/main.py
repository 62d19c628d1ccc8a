"""The app factory uvicorn imports in each worker process (settings from the environment)."""

from __future__ import annotations

from enjournal.bootstrap import compose
from enjournal.server.app import create_app
from enjournal.server.observability import configure_logging
from enjournal.settings import Settings


def app_from_env():
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings, platform=compose(settings, serving=True))
