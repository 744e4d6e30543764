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
        weight_format=settings.weight_format,
        threads=settings.threads,
        max_new_tokens=settings.max_new_tokens,
        load_retry_s=settings.load_retry_s,
        cache_dir=settings.cache_dir,
        model_name=settings.model_name,
        revision=settings.revision,
    )
    app.extensions[EXTENSION] = generator
    app.config["KOGPT2_SETTINGS"] = settings
    return generator


def get_generator() -> Generator:
    return current_app.extensions[EXTENSION]


def get_settings() -> Settings:
    return current_app.config["KOGPT2_SETTINGS"]
