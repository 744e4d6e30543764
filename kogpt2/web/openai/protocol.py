"""OpenAI's Completions API and vLLM's tokenizer endpoints: the bodies this server takes and
answers.

Fields and meanings are OpenAI's; where OpenAI is silent, vLLM's (its extra fields, its
tokenizer endpoints), since that is what OpenAI-compatible clients are written against. Bounds
that OpenAI leaves open are the model layer's own (GenerationParams), read from it. Knobs a
request leaves out take the server's generation settings (GET /info, generation_defaults).
"""

import time
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

from ...model import MAX_PROMPT_CHARS
from ...model.seam import FinishReason
from ..errors import APIError
from ..fields import LicenceStatement, PromptText, bounds, readable, upper_bound

# Below the native API's lowest temperature, sampling would pick the top token all but always:
# such temperatures (0 included) decode greedily.
GREEDY_BELOW = next(m.ge for m in bounds("temperature") if isinstance(m, Ge))
DEFAULT_MAX_TOKENS = 16  # OpenAI's
MAX_STOPS = 4
MAX_LOGPROBS = 5  # OpenAI's
MAX_STOP_TOKEN_IDS = 16
MAX_LOGIT_BIAS = 300  # OpenAI's
# Why each of our finish reasons ended a completion, in OpenAI's two words. The time budget and a
# cancel cut the text short, as the token limit does.
FINISH_REASONS: dict[FinishReason, str] = {
    "stop": "stop", "eos": "stop", "length": "length", "time": "length", "cancelled": "length",
}
# Where OpenAI answers with another status than the native API: every invalid request is 400.
STATUSES = {415: 400, 422: 400}
SERVER_DEFAULT = "Left out: the server's generation setting (GET /info, generation_defaults)"
PROMPT_SHAPES = "a string, a list of strings, a list of token ids, or a list of token-id lists"

# OpenAI's own defaults; null there means them. Knobs whose default is the server's generation
# settings (temperature, top_p, top_k, repetition_penalty) take null as "the server's".
NULL_MEANS_DEFAULT = ["max_tokens", "n", "stream", "echo", "presence_penalty",
                      "frequency_penalty", "min_tokens", "ignore_eos",
                      "include_stop_str_in_output"]

TokenId = Annotated[int, Field(ge=0)]
TokenIds = Annotated[list[TokenId], Field(min_length=1)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool | None = Field(False, description="End the stream with a chunk of usage.")
    continuous_usage_stats: bool | None = Field(
        False, description="vLLM's: a usage object on every chunk, counting the tokens so far.")


class CompletionRequest(BaseModel):
    """POST /v1/completions. Unknown fields are refused, as OpenAI refuses them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="The served model's id (GET /v1/models).",
                       examples=["skt/kogpt2-base-v2"])
    prompt: (
        PromptText | Annotated[list[PromptText], Field(min_length=1)] | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)]
    ) = Field(
        description=f"What to continue: {PROMPT_SHAPES}. A list is a batch, up to the "
        "server's cap (GET /info, limits.max_batch_prompts); its prompts generate together.",
        examples=["근육이 커지기 위해서는"],
    )
    echo: bool | None = Field(False, description="Put the prompt before each completion (and "
                              "its tokens before the completion's in logprobs).")
    max_tokens: Annotated[int, Field(ge=0), *upper_bound("max_new_tokens")] | None = Field(
        DEFAULT_MAX_TOKENS,
        description="New tokens at most; also bounded by the server's cap and, with the prompt, "
        "by the model's 1,024 positions. 0 only with echo: nothing is generated, the prompt "
        "comes back (with logprobs, scored).",
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, allow_inf_nan=False,
        description=f"0 (or below {GREEDY_BELOW}) decodes greedily; above, samples. "
        + SERVER_DEFAULT + " (1.0, OpenAI's, unless configured).",
    )
    top_p: Annotated[float, *bounds("top_p")] | None = Field(None, description=SERVER_DEFAULT)
    n: Annotated[int, *bounds("num_return_sequences")] | None = Field(
        1, description="Completions per prompt. With greedy decoding all n are the same text.",
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
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = Field(
        None, description="Return each token's log-probability and this many likeliest "
        "alternatives (0–5).")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]] | None = (
        Field(None, description="Token id (as a string) to a bias added to its logit "
              "(-100…100)."))
    presence_penalty: float | None = Field(
        0.0, ge=-2.0, le=2.0, allow_inf_nan=False,
        description="Subtracted from a token's logit once it has been generated (OpenAI's).")
    frequency_penalty: float | None = Field(
        0.0, ge=-2.0, le=2.0, allow_inf_nan=False,
        description="Subtracted from a token's logit per time it has been generated.")
    user: str | None = Field(None, description="Accepted and ignored.")
    suffix: str | None = Field(None, description="Not supported: only null or empty.")
    # vLLM's extra fields.
    top_k: Annotated[int, Field(ge=-1), *upper_bound("top_k")] | None = Field(
        None, description="Sample from the k likeliest tokens; 0 or -1: all. " + SERVER_DEFAULT)
    repetition_penalty: Annotated[float, *bounds("repetition_penalty")] | None = Field(
        None, description="Divides the logit of every token already in the text (transformers' "
        "penalty); 1.0 is none. " + SERVER_DEFAULT)
    min_tokens: Annotated[int, Field(ge=0), *upper_bound("max_new_tokens")] | None = Field(
        0, description="The end of text and stop_token_ids can't come before this many tokens.")
    ignore_eos: bool | None = Field(False, description="Keep writing past the end of text.")
    stop_token_ids: Annotated[list[TokenId], Field(max_length=MAX_STOP_TOKEN_IDS)] | None = Field(
        None, description="A completion ends at any of these tokens (not part of its text).")
    include_stop_str_in_output: bool | None = Field(
        False, description="Keep the stop text that ended a completion at its end.")

    @field_validator(*NULL_MEANS_DEFAULT, mode="before")
    @classmethod
    def _null_means_default(cls, value, info: ValidationInfo):
        return cls.model_fields[info.field_name].default if value is None else value

    @field_validator("prompt", mode="before")
    @classmethod
    def _a_prompt_shape(cls, value):
        """Each part checked here, with a plain message, instead of one per member of the
        union that follows (which then only types what passed)."""
        if isinstance(value, str):
            _text(value)
            return value
        if not isinstance(value, list) or not value:
            raise ValueError("prompt is an empty list" if value == [] else
                             f"prompt must be {PROMPT_SHAPES}")
        kinds = {_kind(item) for item in value}
        if len(kinds) != 1 or kinds == {"other"}:
            raise ValueError(f"prompt must be {PROMPT_SHAPES}")
        for item in value:
            if isinstance(item, str):
                _text(item)
            elif isinstance(item, list):
                if not item:
                    raise ValueError("prompt holds an empty token-id list")
                _token_ids(item)
        if kinds == {"int"}:
            _token_ids(value)
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

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_as_keys(cls, value):
        if value is None:
            return value
        if len(value) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} tokens")
        for key in value:
            if not key.isascii() or not key.isdigit():
                raise ValueError(f"{key[:20]!r} is not a token id (a whole number as a string)")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_is_n(cls, value, info: ValidationInfo):
        if value is not None and value != (info.data.get("n") or 1):
            raise ValueError("best_of is not supported: leave it out, or make it equal to n")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value):
        if value:
            raise ValueError("not supported (KoGPT2 continues text; it does not fill in before "
                             "a suffix)")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_with_stream(cls, value, info: ValidationInfo):
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed with stream: true")
        return value

    @field_validator("max_tokens")
    @classmethod
    def _nothing_to_generate_only_with_echo(cls, value, info: ValidationInfo):
        if value == 0 and not info.data.get("echo"):
            raise ValueError("max_tokens: 0 generates nothing; it is allowed only with echo "
                             "(the prompt comes back, scored with logprobs)")
        return value

    @field_validator("min_tokens")
    @classmethod
    def _min_within_max(cls, value, info: ValidationInfo):
        most = info.data.get("max_tokens")
        if most is not None and value > most:
            raise ValueError(f"min_tokens ({value}) is over max_tokens ({most})")
        return value

    @property
    def prompts(self) -> list[str | list[int]]:
        """The batch: each prompt a text or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(item, int) for item in self.prompt):
            return [self.prompt]
        return list(self.prompt)

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def choices_per_prompt(self) -> int:
        return self.n or 1

    def knobs(self, defaults: dict) -> dict:
        """The model layer's knobs this asks for (GenerationParams' fields), over the server's
        generation `defaults`. With greedy decoding, one generation serves all n choices."""
        temperature = self.temperature if self.temperature is not None else defaults[
            "temperature"]
        top_k = self.top_k if self.top_k is not None else defaults["top_k"]
        # Echo with logprobs gives the prompt's scores. Echo with nothing to generate gives the
        # prompt back: the engine reads it all the same (as vLLM does), its scores unasked.
        scores_prompt = self.echo and (self.logprobs is not None or self.max_tokens == 0)
        knobs = dict(
            max_new_tokens=self.max_tokens,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias={int(key): bias for key, bias in (self.logit_bias or {}).items()},
            min_new_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            stop_token_ids=list(self.stop_token_ids or ()),
            logprobs=self.logprobs,
            prompt_logprobs=(self.logprobs or 0) if scores_prompt else None,
        )
        if temperature >= GREEDY_BELOW:
            knobs.update(do_sample=True, temperature=temperature, top_k=max(top_k, 0),
                         top_p=self.top_p, seed=self.seed,
                         num_return_sequences=self.choices_per_prompt)
        return knobs


def _text(text: str) -> None:
    if not text.strip():
        raise ValueError("prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(text)} characters; at most {MAX_PROMPT_CHARS} are "
                         "allowed")
    readable(text)


def _token_ids(ids: list) -> None:
    if any(_kind(token) != "int" for token in ids):
        raise ValueError("a token-id list holds only integers")
    if any(token < 0 for token in ids):
        raise ValueError("token ids are 0 or greater")


def _kind(item) -> str:
    if isinstance(item, bool):
        return "other"
    return {str: "str", int: "int", list: "list"}.get(type(item), "other")


class CompletionLogprobs(BaseModel):
    """OpenAI's `logprobs` object of a choice: one entry per token of the choice's text."""

    tokens: list[str] = Field(description="Each token's text; they join to the choice's text.")
    token_logprobs: list[float | None] = Field(
        description="Each token's log-probability; null for the prompt's first (echo).")
    top_logprobs: list[dict[str, float] | None] = Field(
        description="The likeliest tokens at each position (and the chosen one), by text.")
    text_offset: list[int] = Field(description="Where each token starts in the choice's text.")


class CompletionChoice(BaseModel):
    text: str
    index: int = Field(description="prompt position × n + choice.")
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = Field(
        description="stop: the model ended the text or a stop text or token came; length: "
        "max_tokens, or the server's time budget, cut it. null in a stream's chunks before "
        "the last.",
    )


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of all prompts, each counted once.")
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


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Model(BaseModel):

    id: str = Field(description="The model's public name, as `model` takes it.")
    object: Literal["model"] = "model"
    created: int = Field(description="When this server process started (Unix seconds).")
    owned_by: str
    root: str | None = Field(None, description="vLLM's: the model it serves.")
    max_model_len: int | None = Field(
        None, description="vLLM's: the model's positions (prompt + new tokens), once known.")
    licences: list[LicenceStatement] = Field(
        description="This server's extra field: whose model this is and on what terms "
        "(KoGPT2: CC BY-NC-SA 4.0, SK Telecom, non-commercial).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class TokenizeRequest(BaseModel):
    """POST /tokenize (vLLM's shape)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, description="The served model's id, if given.")
    prompt: Annotated[str, Field(max_length=100_000)] = Field(
        description="The text to tokenize.", examples=["근육이 커지기 위해서는"])
    add_special_tokens: bool = Field(
        True, description="KoGPT2's tokenizer adds none either way (it has no template).")
    return_token_strs: bool | None = Field(
        False, description="Also answer each token as the vocabulary writes it (token_strs).")


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = Field(
        None, description="Each token as the vocabulary writes it (\"▁근육이\"), when asked for "
        "with return_token_strs.")


class DetokenizeRequest(BaseModel):
    """POST /detokenize (vLLM's shape)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, description="The served model's id, if given.")
    tokens: Annotated[list[TokenId], Field(max_length=100_000)] = Field(examples=[[33245]])


class DetokenizeResponse(BaseModel):
    prompt: str


class TokenizerInfo(BaseModel):
    """GET /tokenizer_info (vLLM's): what a client needs to tokenize as this server does."""

    model_config = ConfigDict(extra="allow")

    tokenizer_class: str
    eos_token: str
    bos_token: str
    pad_token: str
    unk_token: str
    model_max_length: int
    chat_template: None = Field(None, description="KoGPT2 is a plain language model: none.")


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

