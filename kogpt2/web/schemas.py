"""The HTTP API's request and response bodies: one set of models validates and documents."""

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..model import MAX_PROMPT_CHARS, GenerationParams, GenerationResult
from ..model.seam import FinishReason


def _readable(text: str) -> str:
    categories = [unicodedata.category(char) for char in text]
    if "Cs" in categories:
        raise ValueError("text contains invalid Unicode (a lone surrogate)")
    if any(cat == "Cc" and char not in "\n\t" for cat, char in zip(categories, text, strict=True)):
        raise ValueError("text contains control characters")
    if not any(cat[0] in "LNPS" for cat in categories):
        raise ValueError("text has no visible characters")
    return text


Title = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The title (제목) to continue.",
        examples=["근육이 커지기 위해서는"],
    ),
    AfterValidator(_readable),
]


class GenerateRequest(GenerationParams):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    text: Title
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

    def params(self) -> GenerationParams:
        return GenerationParams(**self.model_dump(exclude={"text", "stream"}))


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


class ErrorResponse(BaseModel):
    """Every error of the native API: the body of a 4xx/5xx answer, and a stream's last event
    when the generation failed after its first token."""

    error: str = Field(description="What went wrong and what the caller can do.")
    error_type: str
    request_id: str | None = Field(
        description="This request's id (X-Request-ID): the server's log line for it says more."
    )


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
    status: Literal["ok", "starting", "failed"] = Field(
        description="ok: the model is loaded; starting: not yet (it loads on the first request "
        "or warm-up); failed: its last load failed (answered with 503)."
    )
    model_state: ModelState
    model_loaded: bool = Field(description="Whether this process has loaded the model yet.")


class InfoLimits(BaseModel):
    max_prompt_chars: int
    max_new_tokens: int
    max_positions: int | None
    time_budget_s: float
    max_body_bytes: int


class InfoConcurrency(BaseModel):
    max_concurrency: int = Field(description="Generations at once in this process.")
    queue_size: int = Field(description="Requests that may wait for a slot; more get 429.")
    queue_timeout_s: float = Field(description="Longest wait for a slot before 429.")
    running: int
    waiting: int


class InfoProgress(BaseModel):
    stage: str = Field(description="What the model's preparation is doing, in words.")
    percent: int = Field(ge=0, le=100)


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
    parameters: dict[str, Any] = Field(description="Each generation parameter's JSON Schema.")
