"""Typed, bounded inputs of one generation (no web, no torch)."""


from pydantic import BaseModel, ConfigDict, Field, model_validator

# The original Lambda handler called generate(max_length=90): 90 tokens including the prompt.
DEFAULT_TOTAL_TOKENS = 90
MAX_PROMPT_CHARS = 1000
MAX_RETURN_SEQUENCES = 4
MAX_SEED = 2**32 - 1




class GenerationParams(BaseModel):
    """Knobs of one generation. Defaults reproduce the original handler: greedy, penalty 2.0."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_new_tokens: int | None = Field(
        None, ge=1, le=1023,
        description="New tokens to generate. Default: enough to make 90 tokens with the prompt.",
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

    @model_validator(mode="after")
    def _several_sequences_need_sampling(self):
        if self.num_return_sequences > 1 and not self.do_sample:
            raise ValueError(
                "num_return_sequences > 1 needs do_sample=true (greedy decoding gives one answer)"
            )
        return self
