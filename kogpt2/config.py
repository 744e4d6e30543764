"""The service's settings: defaults, then KOGPT2_* environment variables, then a mapping."""

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .model import GenerationParams, Generator, engines
from .model.licence import Licence
from .model.seam import LogprobsMode
from .model.source import DEFAULT_MODEL_ID

# The knobs a request may leave out, whose defaults are the server's generation settings.
DEFAULTABLE = ("repetition_penalty", "temperature", "top_k", "top_p")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOGPT2_", extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL_ID, description="Hub id or local model directory.")
    model_name: str | None = Field(
        None, description="The model's public name in answers; default: its hub id, or a "
        "local directory's folder name."
    )
    model_licence: Licence | None = Field(
        None, description="The licence of the served weights, as JSON (work, owner, name, url, "
        "source_url, non_commercial), for weights that are not KoGPT2 or an adaptation of it; "
        "KoGPT2's licence is stated for its tokenizer still. Default: KoGPT2's, for both.",
    )
    revision: str | None = Field(None, description="Hub revision of a hub id; default: main.")
    engine: Literal["auto", "openvino", "ctranslate2", "transformers"] = Field(
        "auto",
        description="auto: the directory's own engine; a transformers model is prepared for "
        "the fastest installed engine.",
    )
    compute_type: str = Field(
        "default", pattern=r"^[a-z0-9_]{1,32}$",
        description="The engine's compute type; default: the engine's choice.",
    )
    weight_format: Literal["int8", "float32"] = Field(
        "int8", description="Weights of a prepared copy (openvino, ctranslate2)."
    )
    cache_dir: str | None = Field(
        None, description="Where prepared copies are kept; default: ~/.cache/kogpt2."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        ["*"], description="Comma-separated origins allowed to call the API; * for any."
    )
    cors_credentials: bool = False
    max_new_tokens: int = Field(256, ge=1, le=1023, description="Server cap on new tokens.")
    time_budget_s: float = Field(
        20.0, gt=0, le=28, description="A generation stops here; API Gateway cuts at 29 s."
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="Engine threads; default: the CPUs this container may "
        "use (its cgroup CPU quota and affinity), divided among KOGPT2_WORKERS.",
    )
    workers: int = Field(
        1, ge=1, le=256, description="Server processes sharing the CPUs (gunicorn.conf.py sets "
        "it to gunicorn's worker count).",
    )
    load_retry_s: float = Field(
        5.0, ge=0, description="Wait before trying a failed load again; it doubles with each "
        "failure, up to load_retry_max_s.",
    )
    load_retry_max_s: float = Field(300.0, ge=0, description="The longest wait between loads.")
    load_on_start: bool = Field(
        True, description="Under gunicorn, each worker starts loading the model as it starts "
        "and tries a failed load again by itself; false: the first request (or /ready) starts "
        "it.",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Reliability under load: bounded generations, a short queue, then 429 (web/limits.py).
    # By default as many as the engine decodes together: its row cap (their requests share
    # the engine's steps); 1 for transformers (an engine that runs one at a time gains nothing
    # from a second slot: waiting would only move into the engine, where no 429 can refuse it).
    # Lambda sends an instance one request at a time whatever this says.
    max_concurrency: int | None = Field(
        None, ge=1, le=64, description="Generations at once in one process; default: the "
        "engine's row cap (max_batch_rows), 1 for transformers.",
    )
    max_batch_rows: int | None = Field(
        None, ge=1, le=64, description="Rows decoded together, every request's: openvino's "
        "continuous batching (default 20), ctranslate2's shared generate_batch (default 8); "
        "more wait in the engine's queue. transformers runs one row at a time.",
    )
    queue_size: int = Field(8, ge=0, le=256, description="Requests that may wait for a slot.")
    queue_timeout_s: float = Field(
        5.0, ge=0, le=25, description="Longest wait for a slot before 429; counts in the budget."
    )
    log_prompts: bool = Field(False, description="Put prompt text in the request log.")
    # What a request leaves out (both APIs and the page), as vLLM applies a model's generation
    # config: the original handler's settings (GenerationParams' defaults: repetition penalty
    # 2.0, and transformers' temperature 1.0, top_k 50, top_p 1.0), then these overrides.
    generation_config: dict[str, int | float] = Field(
        {}, description="JSON overrides of the generation defaults, e.g. "
        '{"repetition_penalty": 1.2}; keys: ' + ", ".join(DEFAULTABLE) + ".",
    )
    metrics: bool = Field(True, description="Serve GET /metrics (Prometheus' text format).")
    emf: bool = Field(
        default_factory=lambda: "AWS_LAMBDA_FUNCTION_NAME" in os.environ,
        description="Write each request's figures to stdout as CloudWatch Embedded Metric "
        "Format lines; default: on when running on AWS Lambda.",
    )
    max_batch_prompts: int = Field(
        20, ge=1, le=256, description="Prompts in one /v1/completions request (a batch)."
    )
    logprobs_mode: LogprobsMode = Field(
        "raw_logprobs", description="What a generated token's log-probabilities are (vLLM's "
        "logprobs_mode): raw_logprobs, the model's own distribution; processed_logprobs, the "
        "one it was chosen from (after the penalties, logit_bias and, when sampling, "
        "temperature, top-k and top-p). A prompt's (echo) are the model's own in both.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("generation_config")
    @classmethod
    def _known_bounded_knobs(cls, value):
        unknown = sorted(set(value) - set(DEFAULTABLE))
        if unknown:
            raise ValueError(f"unknown generation setting(s) {unknown}; known: {DEFAULTABLE}")
        GenerationParams(**value)  # inside the knobs' bounds
        return value

    def generation_defaults(self) -> dict:
        """The generation settings a request's missing knobs take."""
        built_in = {name: GenerationParams.model_fields[name].default for name in DEFAULTABLE}
        return {**built_in, **self.generation_config}

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self):
        if self.cors_credentials and "*" in self.cors_origins:
            raise ValueError(
                "KOGPT2_CORS_CREDENTIALS needs explicit KOGPT2_CORS_ORIGINS, not '*'"
            )
        return self

    @property
    def generation_slots(self) -> int:
        """max_concurrency, or its default for this engine."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        rows = engines.default_rows(self.engine, self.model)
        return (self.max_batch_rows or rows) if rows > 1 else 1

    @classmethod
    def from_mapping(cls, mapping=None) -> tuple["Settings", dict]:
        """Split a Flask-style mapping into this service's settings and plain Flask config."""
        ours, flask_config = {}, {}
        for key, value in (mapping or {}).items():
            name = key.lower().removeprefix("kogpt2_")
            if name in cls.model_fields:
                ours[name] = value
            else:
                flask_config[key] = value
        return cls(**ours), flask_config


def make_generator(settings: Settings) -> Generator:
    """The generator these settings describe (the app's, and scripts/cache.py's)."""
    return Generator(
        settings.model,
        engine=settings.engine,
        compute_type=settings.compute_type,
        weight_format=settings.weight_format,
        threads=settings.threads,
        workers=settings.workers,
        max_new_tokens=settings.max_new_tokens,
        max_batch_rows=settings.max_batch_rows,
        load_retry_s=settings.load_retry_s,
        load_retry_max_s=settings.load_retry_max_s,
        cache_dir=settings.cache_dir,
        model_name=settings.model_name,
        revision=settings.revision,
        logprobs_mode=settings.logprobs_mode,
    )
