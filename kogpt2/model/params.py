"""Typed, bounded inputs of one generation (no web, no torch)."""


from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

# The original Lambda handler called generate(max_length=90): 90 tokens including the prompt.
DEFAULT_TOTAL_TOKENS = 90
MAX_PROMPT_CHARS = 1000
MAX_RETURN_SEQUENCES = 4
MAX_SEED = 2**32 - 1
MAX_STOP_TOKEN_IDS = 16
MAX_LOGIT_BIAS = 300  # OpenAI's limit
MAX_LOGPROBS = 5  # top alternatives per token, OpenAI's completions limit
# JSON object keys are strings: a logit_bias key may be "50256" as OpenAI's clients send it.
TokenIdKey = Annotated[int, Strict(False)]


class GenerationParams(BaseModel):
    """Knobs of one generation. Defaults reproduce the original handler: greedy, penalty 2.0.

    The fields past `num_return_sequences` mean what they mean in OpenAI's and vLLM's APIs; the
    order they act in is sampling.py's, the same on every engine."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_new_tokens: int | None = Field(
        None, ge=0, le=1023,
        description="New tokens to generate. Default: enough to make 90 tokens with the prompt. "
        "0 only with prompt_logprobs (score the prompt, generate nothing).",
    )
    repetition_penalty: float = Field(2.0, ge=1.0, le=10.0, allow_inf_nan=False)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, ge=0.05, le=5.0, allow_inf_nan=False)
    top_k: int = Field(50, ge=0, le=1000, description="0 disables top-k filtering.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED,
        description="Makes sampling reproducible. Without it a random seed is drawn and reported.",
    )
    num_return_sequences: int = Field(1, ge=1, le=MAX_RETURN_SEQUENCES)
    min_new_tokens: int = Field(
        0, ge=0, le=1023,
        description="The end-of-text token and stop_token_ids can't come before this many new "
        "tokens (vLLM's min_tokens).",
    )
    ignore_eos: bool = Field(
        False, description="Never end at the end-of-text token: it can't be chosen at all.",
    )
    stop_token_ids: list[int] = Field(
        default_factory=list, max_length=MAX_STOP_TOKEN_IDS,
        description="A sequence ends when it picks one of these ids (finish reason stop); the "
        "id is not part of the text.",
    )
    logit_bias: dict[TokenIdKey, float] = Field(
        default_factory=dict, max_length=MAX_LOGIT_BIAS,
        description="Token id -> a value from -100 to 100 added to its logit before the "
        "penalties and the choice (OpenAI's logit_bias, in transformers' and vLLM's order).",
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, allow_inf_nan=False,
        description="Subtracted from the logit of every token the generation holds already "
        "(OpenAI's; generated tokens only).",
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, allow_inf_nan=False,
        description="Subtracted from a token's logit once per time the generation holds it "
        "(OpenAI's; generated tokens only).",
    )
    logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS,
        description="Give each new token's log-probability and this many likeliest "
        "alternatives: the model's own distribution (the server's KOGPT2_LOGPROBS_MODE "
        "processed_logprobs: the distribution it was chosen from).",
    )
    prompt_logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS,
        description="Give each prompt token's log-probability given the tokens before it (the "
        "first has none) and this many likeliest alternatives.",
    )

    @field_validator("stop_token_ids")
    @classmethod
    def _ids_are_not_negative(cls, value: list[int]) -> list[int]:
        if any(token < 0 for token in value):
            raise ValueError("token ids are not negative")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_bounds(cls, value: dict[int, float]) -> dict[int, float]:
        for token, bias in value.items():
            if token < 0:
                raise ValueError("token ids are not negative")
            if not -100.0 <= bias <= 100.0:  # NaN fails this too
                raise ValueError(f"a bias is from -100 to 100, not {bias}")
        return value

    @model_validator(mode="after")
    def _several_sequences_need_sampling(self):
        if self.num_return_sequences > 1 and not self.do_sample:
            raise ValueError(
                "num_return_sequences > 1 needs do_sample=true (greedy decoding gives one answer)"
            )
        return self

    @model_validator(mode="after")
    def _nothing_new_only_to_score(self):
        if self.max_new_tokens == 0 and self.prompt_logprobs is None:
            raise ValueError("max_new_tokens 0 generates nothing: it needs prompt_logprobs")
        return self

    @property
    def rows(self) -> int:
        """The sequences one prompt makes: num_return_sequences when sampling, else one."""
        return self.num_return_sequences if self.do_sample else 1

    def features(self) -> frozenset[str]:
        """The optional features this asks for, by the names engines declare (seam.FEATURES)."""
        asked = {
            "min_new_tokens": self.min_new_tokens > 0,
            "ignore_eos": self.ignore_eos,
            "stop_token_ids": bool(self.stop_token_ids),
            "logit_bias": bool(self.logit_bias),
            "presence_penalty": self.presence_penalty != 0.0,
            "frequency_penalty": self.frequency_penalty != 0.0,
            "logprobs": self.logprobs is not None,
            "prompt_logprobs": self.prompt_logprobs is not None,
        }
        return frozenset(name for name, on in asked.items() if on)
