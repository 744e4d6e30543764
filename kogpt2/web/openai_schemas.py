"""OpenAI's Completions API bodies, as this server takes and answers them.

Fields and defaults are OpenAI's; bounds that OpenAI leaves open are the native API's own
(GenerationParams), read from it so the two APIs can't drift apart. `top_k` and
`repetition_penalty` are extra fields, as vLLM takes them.
"""

import time
import unicodedata
import uuid
from typing import Annotated, Literal

from annotated_types import Ge
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from ..model import GenerationParams, GenerationResult
from ..model.seam import FinishReason
from .errors import APIError


def bounds(name: str) -> list:
    """The constraints of a GenerationParams field."""
    return GenerationParams.model_fields[name].metadata


# Below the native API's lowest temperature, sampling would pick the top token all but always:
# such temperatures (0 included) decode greedily.
GREEDY_BELOW = next(m.ge for m in bounds("temperature") if isinstance(m, Ge))
DEFAULT_MAX_TOKENS = 16  # OpenAI's
MAX_STOPS = 4
# Why each of our finish reasons ended a completion, in OpenAI's two words. The time budget and a
# cancel cut the text short, as the token limit does.
FINISH_REASONS: dict[FinishReason, str] = {
    "stop": "stop", "eos": "stop", "length": "length", "time": "length", "cancelled": "length",
}
# OpenAI's fields that this server does not implement: refused unless left off (these values).
UNSUPPORTED = {
    "suffix": ((None, ""), "KoGPT2 continues text; it does not fill in before a suffix"),
    "logprobs": ((None,), "log probabilities are not returned"),
    "logit_bias": ((None, {}), "logit bias is not implemented"),
    "presence_penalty": ((None, 0), "use repetition_penalty, a multiplicative penalty"),
    "frequency_penalty": ((None, 0), "use repetition_penalty, a multiplicative penalty"),
}
# Where OpenAI answers with another status than the native API: every invalid request is 400.
STATUSES = {415: 400, 422: 400}
NULL_MEANS_DEFAULT = ["max_tokens", "temperature", "top_p", "n", "stream", "echo", "top_k",
                      "repetition_penalty"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = Field(False, description="End the stream with a chunk of usage.")


class CompletionRequest(BaseModel):
    """POST /v1/completions. Unknown fields are refused, as OpenAI refuses them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="The served model's id (GET /v1/models).",
                       examples=["skt/kogpt2-base-v2"])
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="The text to continue: a string, or a list of one string.",
        examples=["근육이 커지기 위해서는"],
    )
    max_tokens: Annotated[int, *bounds("max_new_tokens")] | None = Field(
        DEFAULT_MAX_TOKENS,
        description="New tokens at most; also bounded by the server's cap and, with the prompt, "
        "by the model's 1,024 positions.",
    )
    temperature: float | None = Field(
        1.0, ge=0.0, le=2.0, allow_inf_nan=False,
        description=f"0 (or below {GREEDY_BELOW}) decodes greedily; above, samples.",
    )
    top_p: Annotated[float, *bounds("top_p")] | None = 1.0
    n: Annotated[int, *bounds("num_return_sequences")] | None = Field(
        1, description="Completions to return. With greedy decoding all n are the same text.",
    )
    best_of: int | None = Field(None, description="Only null or equal to n.")
    seed: Annotated[int, *bounds("seed")] | None = Field(
        None, description="Makes sampling reproducible; without it each request samples anew.",
    )
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = Field(
        None, description=f"Up to {MAX_STOPS} texts; a completion ends before the first one "
        "it holds, with finish_reason \"stop\".",
    )
    stream: bool | None = Field(False, description="Send OpenAI's chunks as server-sent events.")
    stream_options: StreamOptions | None = None
    echo: bool | None = Field(False, description="Put the prompt before each completion.")
    user: str | None = Field(None, description="Accepted and ignored.")
    top_k: Annotated[int, *bounds("top_k")] | None = Field(
        0, description="Extra field (as vLLM): sample from the k likeliest tokens; 0: all.",
    )
    repetition_penalty: Annotated[float, *bounds("repetition_penalty")] | None = Field(
        1.0, description="Extra field (as vLLM): 1.0 is none; /generate's default is 2.0.",
    )
    suffix: str | None = None
    logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @field_validator(*NULL_MEANS_DEFAULT, mode="before")
    @classmethod
    def _null_means_default(cls, value, info: ValidationInfo):
        return cls.model_fields[info.field_name].default if value is None else value

    # Before the type checks, so that common mistakes get a plain message, not a union's.
    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1 or not isinstance(value[0], str):
                raise ValueError(
                    "this server takes one prompt: a string or a list of one string "
                    "(not token ids, not a batch)"
                )
            text = value[0]
        else:
            text = value
        if isinstance(text, str) and any(unicodedata.category(c) == "Cs" for c in text):
            raise ValueError("the prompt holds invalid Unicode (a lone surrogate)")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_texts(cls, value):
        stops = [value] if isinstance(value, str) else value
        if isinstance(stops, list):
            if len(stops) > MAX_STOPS:
                raise ValueError(f"at most {MAX_STOPS} stop texts")
            if "" in stops:
                raise ValueError("a stop text can't be empty")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_is_n(cls, value, info: ValidationInfo):
        if value is not None and value != info.data.get("n"):
            raise ValueError("best_of is not supported: leave it out, or make it equal to n")
        return value

    @field_validator(*UNSUPPORTED)
    @classmethod
    def _unsupported(cls, value, info: ValidationInfo):
        off, instead = UNSUPPORTED[info.field_name]
        if value not in off:
            raise ValueError(f"not supported ({instead})")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_with_stream(cls, value, info: ValidationInfo):
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed with stream: true")
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def params(self) -> GenerationParams:
        """The native generation this asks for: with greedy decoding, one run serves all n."""
        sampling = {} if self.greedy else dict(
            do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            seed=self.seed, num_return_sequences=self.n,
        )
        return GenerationParams(max_new_tokens=self.max_tokens,
                                repetition_penalty=self.repetition_penalty, **sampling)


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = Field(
        description="stop: the model ended the text or a stop text came; length: max_tokens, "
        "or the server's time budget, cut it. null in a stream's chunks before the last.",
    )


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="Tokens generated for all choices together.")
    total_tokens: int


class Completion(BaseModel):
    """A completion, or (object the same, usage null) one chunk of a streamed one."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None

    @classmethod
    def from_result(cls, asked: CompletionRequest, result: GenerationResult) -> "Completion":
        # Greedy decoding has one answer: one generation serves all n choices.
        sequences = result.sequences * asked.n if asked.greedy else result.sequences
        start = 0 if asked.echo else len(asked.text)
        choices = [
            CompletionChoice(text=sequence.text[start:], index=index,
                             finish_reason=FINISH_REASONS[sequence.finish_reason])
            for index, sequence in enumerate(sequences)
        ]
        generated = sum(sequence.generated_tokens for sequence in sequences)
        usage = CompletionUsage(prompt_tokens=result.prompt_tokens, completion_tokens=generated,
                                total_tokens=result.prompt_tokens + generated)
        return cls(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=result.model,
                   choices=choices, usage=usage)


class Model(BaseModel):
    id: str = Field(description="The model's public name, as `model` takes it.")
    object: Literal["model"] = "model"
    created: int = Field(description="When this server process started (Unix seconds).")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class OpenAIErrorBody(BaseModel):
    message: str = Field(description="What went wrong and what the caller can do.")
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error.")
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None = Field(description="model_not_found, or the native API's error_type.")


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody

    @classmethod
    def from_error(cls, error: APIError) -> "OpenAIErrorResponse":
        """An error as described for the native API (errors.describe), in OpenAI's words."""
        status = openai_status(error)
        kind = ("server_error" if status >= 500 else
                "rate_limit_error" if status == 429 else "invalid_request_error")
        return cls(error=OpenAIErrorBody(message=error.message, type=kind, param=error.param,
                                         code=error.error_type))


def openai_status(error: APIError) -> int:
    return STATUSES.get(error.status, error.status)
