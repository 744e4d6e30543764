"""Where the app keeps its settings and its one generator."""

from flask import current_app

from ..config import Settings
from ..model import Generator

EXTENSION = "kogpt2"


def attach(app, settings: Settings) -> Generator:
    generator = Generator(
        settings.model,
        engine=settings.engine,
        compute_type=settings.compute_type,
        threads=settings.threads,
        max_new_tokens=settings.max_new_tokens,
        load_retry_s=settings.load_retry_s,
    )
    app.extensions[EXTENSION] = generator
    app.config["KOGPT2_SETTINGS"] = settings
    return generator


def get_generator() -> Generator:
    return current_app.extensions[EXTENSION]


def get_settings() -> Settings:
    return current_app.config["KOGPT2_SETTINGS"]
