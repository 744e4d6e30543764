"""What one generation gives back: each sequence's text and why it ended."""

from dataclasses import dataclass, field

from .seam import FinishReason, TokenLogprob


@dataclass(frozen=True)
class Sequence:
    """`text` is the prompt's text and the continuation. `token_ids` are the new tokens the
    text holds (without the EOS or stop id that ended it); cut by a stop text, those it took to
    complete that text, which the text then ends before. `logprobs` (when asked): one per
    token_ids, then one for the EOS or stop id that ended it, if one did."""

    text: str
    generated_tokens: int
    finish_reason: FinishReason
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    stop_text: str | None = None  # the stop text that ended it, which `text` ends before


@dataclass(frozen=True)
class GenerationResult:
    """One prompt's sequences. `prompt_logprobs` (when asked): one per prompt token, the first
    None. `queued_ms`: how long its rows waited for the engine before their prompt was read."""

    sequences: list[Sequence]
    prompt_tokens: int
    seed: int | None
    model: str
    engine: str
    time_ms: int
    prompt_ids: list[int] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    queued_ms: int = 0

    @property
    def finish_reason(self) -> FinishReason:
        reasons = {s.finish_reason for s in self.sequences}
        return "time" if "time" in reasons else self.sequences[0].finish_reason

    @property
    def generated_tokens(self) -> int:
        return max(s.generated_tokens for s in self.sequences)
