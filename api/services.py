"""What the views need, built once per app by create_app and found through the current app."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from gradaudit.artifacts import ArtifactStore
from gradaudit.settings import Settings


@dataclass
class Services:
    """What the views need, built once per app."""

    settings: Settings
    sessions: sessionmaker[Session]
    store: ArtifactStore
    celery: Celery


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["gradaudit"]
