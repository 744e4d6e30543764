"""The HTTP API's request and response bodies: one set of models validates and documents."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...model import GenerationResult
from ...model.params import MAX_RETURN_SEQUENCES
from ...model.seam import FinishReason
from ..errors import ErrorResponse, InfoProgress
from ..fields import LicenceStatement, PromptText, bounds

Title = Annotated[PromptText, Field(description="The title (제목) to continue.")]
SERVER_DEFAULT = "Default: the server's generation settings (GET /info, generation_defaults)."


class GenerateRequest(BaseModel):
    """POST /generate. Knobs left out take the server's generation settings (the original
    handler's: greedy, repetition penalty 2.0, 90 tokens in all)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    text: Title
    max_new_tokens: Annotated[int, *bounds("max_new_tokens")] | None = Field(
        None, description="New tokens to generate. Default: enough to make 90 tokens with the "
        "prompt.",
    )
    repetition_penalty: Annotated[float, *bounds("repetition_penalty")] | None = Field(
        None, description=SERVER_DEFAULT)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: Annotated[float, *bounds("temperature")] | None = Field(
        None, description=SERVER_DEFAULT)
    top_k: Annotated[int, *bounds("top_k")] | None = Field(
        None, description="0 disables top-k filtering. " + SERVER_DEFAULT)
    top_p: Annotated[float, *bounds("top_p")] | None = Field(None, description=SERVER_DEFAULT)
    seed: Annotated[int, *bounds("seed")] | None = Field(
        None, description="Makes sampling reproducible. Without it a random seed is drawn and "
        "reported.",
    )
    num_return_sequences: int = Field(
        1, ge=1, le=MAX_RETURN_SEQUENCES,
        description="Sequences to return; more than 1 needs do_sample.",
    )
    stream: bool = Field(
        False,
        description="Answer text/event-stream: one event per new token, then the answer "
        "(README, \"Streaming\"). Streams one sequence: num_return_sequences must be 1.",
    )

    @model_validator(mode="after")
    def _one_sequence_per_stream(self):
        if self.stream and self.num_return_sequences > 1:
            raise ValueError("stream=true streams one sequence; num_return_sequences must be 1")
        return self

    @classmethod
    def parameters_schema(cls) -> dict:
        """Each generation parameter's JSON Schema (bounds, meaning), for GET /info."""
        properties = cls.model_json_schema()["properties"]
        return {name: schema for name, schema in properties.items()
                if name not in ("text", "stream")}

    def knobs(self) -> dict:
        """The generation's knobs as set by the caller (None: the server's default)."""
        return self.model_dump(exclude={"text", "stream"})


class LegacyContext(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    main_title: Title


class LegacyRequest(BaseModel):
    """The original Lambda handler's body; answered in its own shape."""

    model_config = ConfigDict(extra="forbid", strict=True)

    context: LegacyContext


class GeneratedSequence(BaseModel):
    text: str
    generated_tokens: int
    finish_reason: FinishReason


class Details(BaseModel):
    finish_reason: FinishReason
    prompt_tokens: int
    generated_tokens: int
    seed: int | None
    model: str
    engine: str
    time_ms: int


class GenerateResponse(BaseModel):
    generated_text: str
    generations: list[GeneratedSequence]
    details: Details

    @classmethod
    def from_result(cls, result: GenerationResult) -> "GenerateResponse":
        return cls(
            generated_text=result.sequences[0].text,
            generations=[GeneratedSequence(**vars(s)) for s in result.sequences],
            details=Details(
                finish_reason=result.finish_reason,
                prompt_tokens=result.prompt_tokens,
                generated_tokens=result.generated_tokens,
                seed=result.seed,
                model=result.model,
                engine=result.engine,
                time_ms=result.time_ms,
            ),
        )


class LegacyAnswer(BaseModel):
    gen_text: list[str]


class LegacyResponse(BaseModel):
    answer: LegacyAnswer

    @classmethod
    def from_result(cls, result: GenerationResult) -> "LegacyResponse":
        return cls(answer=LegacyAnswer(gen_text=[s.text for s in result.sequences]))


class Token(BaseModel):
    id: int = Field(description="The token's id in the model's vocabulary.")
    text: str = Field(
        description="The text it adds: empty while a character is still incomplete, which a "
        "later token's text completes."
    )


class TokenEvent(BaseModel):
    """One event of a stream per new token; the texts join to the continuation of the title."""

    token: Token


ModelState = Literal["not_loaded", "loading", "ready", "failed"]


class HealthResponse(BaseModel):
    """GET /health, liveness: the process answers (always 200), whatever the model's state."""

    status: Literal["ok"] = Field(description="The process serves requests.")
    model_state: ModelState = Field(description="For people; GET /ready is the readiness check.")
    model_loaded: bool = Field(description="Whether this process has loaded the model yet.")


class InfoLimits(BaseModel):
    max_prompt_chars: int
    max_new_tokens: int
    max_positions: int | None
    time_budget_s: float
    max_body_bytes: int
    max_batch_prompts: int = Field(description="Prompts in one /v1/completions request.")


class InfoConcurrency(BaseModel):
    max_concurrency: int = Field(description="Generations at once in this process.")
    queue_size: int = Field(description="Requests that may wait for a slot; more get 429.")
    queue_timeout_s: float = Field(description="Longest wait for a slot before 429.")
    running: int
    waiting: int


class InfoBatch(BaseModel):
    rows_running: int = Field(description="Sequences the engine is generating now.")
    rows_waiting: int = Field(description="Sequences waiting in the engine for a place.")
    max_rows: int | None = Field(description="Sequences that decode in one step, every "
                                 "request's together (the engine's cap; null until loaded).")


class ReadyResponse(BaseModel):
    """GET /ready, readiness: 200 once the model is loaded, else 503 with Retry-After."""

    ready: bool
    model_state: ModelState
    progress: InfoProgress | None = Field(description="While the model is being prepared.")


class InfoResponse(BaseModel):
    """Documents GET /info; the schema tests check the route's answer against it."""

    model: str = Field(description="The model's public name (a hub id).")
    revision: str | None = Field(description="The hub commit it was made from, if known.")
    state: ModelState
    progress: InfoProgress | None = Field(description="While the model is being prepared.")
    loaded: bool
    engine: str
    compute_type: str | None
    threads: int
    load_count: int = Field(description="Model loads in this process: 1 once loaded.")
    limits: InfoLimits
    concurrency: InfoConcurrency
    batch: InfoBatch
    generation_defaults: dict[str, int | float] = Field(
        description="What a request leaves out takes: the server's generation settings "
        "(KOGPT2_GENERATION_CONFIG over the original handler's), the same for /generate, /v1 "
        "and the page.")
    licences: list[LicenceStatement] = Field(
        description="Whose model this is and on what terms: KoGPT2's (CC BY-NC-SA 4.0, SK "
        "Telecom, non-commercial), and the weights' own when they are another's.")
    parameters: dict[str, Any] = Field(description="Each generation parameter's JSON Schema.")


__all__ = ["ErrorResponse"]  # the native shape of every error (errors.py renders it)
