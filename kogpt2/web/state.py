"""Where the app keeps its settings and its one generator."""

from flask import current_app

from ..config import Settings, make_generator
from ..model import Generator

EXTENSION = "kogpt2"


def attach(app, settings: Settings) -> Generator:
    generator = make_generator(settings)
    app.extensions[EXTENSION] = generator
    app.config["KOGPT2_SETTINGS"] = settings
    return generator


def get_generator() -> Generator:
    return current_app.extensions[EXTENSION]


def get_settings() -> Settings:
    return current_app.config["KOGPT2_SETTINGS"]
