"""The HTTP API: a Flask app that stores uploads, writes rows and sends tasks by name."""

from __future__ import annotations

from flask import Flask

from api.services import Services
from gradaudit.artifacts import ArtifactStore
from gradaudit.queue import make_celery
from gradaudit.settings import Settings, load_settings
from models.database import make_engine, make_session_factory

# Multipart framing and the `options` field ride on top of the file itself.
FORM_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from settings (default: the environment)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    app.json.sort_keys = False
    app.extensions["gradaudit"] = Services(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.sqlalchemy_url)),
        store=ArtifactStore(settings.artifacts_path),
        celery=make_celery(settings),
    )
    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from api.audits import audits
    from api.health import health
    from api.metrics import metrics
    from api.openapi import openapi
    from api.pages import pages
    from api.problems import problems

    for blueprint in (problems, audits, health, metrics, openapi, pages):
        app.register_blueprint(blueprint)
