"""The service's settings: defaults, then KOGPT2_* environment variables, then a mapping."""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .model import available_cpus


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOGPT2_", extra="forbid", frozen=True)

    model: str = Field("skt/kogpt2-base-v2", description="Hub id or local model directory.")
    model_name: str | None = Field(
        None, description="The model's public name in answers; default: its hub id."
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
    threads: int = Field(default_factory=available_cpus, ge=1, le=256)
    load_retry_s: float = Field(5.0, ge=0, description="Wait before retrying a failed load.")
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Reliability under load: bounded generations, a short queue, then 429 (web/limits.py).
    # 1 everywhere. Lambda sends an instance one request at a time; under gunicorn, measured
    # (README, "Serving under load"), the engine runs one generation at a time, so a second
    # slot gave no throughput (1.13 vs 1.10 answers/s) and only moved waiting into the
    # engine, where a request can't be refused and its time budget runs out.
    max_concurrency: int = Field(
        1, ge=1, le=64, description="Generations at once in one process."
    )
    queue_size: int = Field(8, ge=0, le=256, description="Requests that may wait for a slot.")
    queue_timeout_s: float = Field(
        5.0, ge=0, le=25, description="Longest wait for a slot before 429; counts in the budget."
    )
    log_prompts: bool = Field(False, description="Put prompt text in the request log.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self):
        if self.cors_credentials and "*" in self.cors_origins:
            raise ValueError(
                "KOGPT2_CORS_CREDENTIALS needs explicit KOGPT2_CORS_ORIGINS, not '*'"
            )
        return self

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
