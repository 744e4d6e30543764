"""What one generation gives back: each sequence's text and why it ended."""

from collections.abc import Callable
from dataclasses import dataclass, field

from .seam import EngineOutput, FinishReason, TokenLogprob
from .stops import cut_at_stop


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

    @classmethod
    def of(cls, prompt_text: str, out: EngineOutput, decode: Callable[[list[int]], str],
           stop: tuple[str, ...] = ()) -> "Sequence":
        """An engine's row after `prompt_text`: `decode(ids)` is the text new ids add; the
        text ends before the first of the `stop` texts in it."""
        cut = cut_at_stop(decode, out.token_ids, stop) if stop else None
        if cut is None:
            continuation, kept = decode(out.token_ids), len(out.token_ids)
            generated = kept + (out.end_token_id is not None)  # the end token was made too
            finish_reason, stop_text = out.finish_reason, None
        else:
            continuation, generated, stop_text = cut
            finish_reason, kept = "stop", generated
        # Ended by a token (EOS, a stop id), its log-probability comes last.
        ends = cut is None and out.end_token_id is not None
        logprobs = out.logprobs[: kept + ends] if out.logprobs is not None else None
        return cls(prompt_text + continuation, generated, finish_reason, out.token_ids[:kept],
                   logprobs, stop_text)


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
        """New tokens generated for this prompt: every sequence's, together."""
        return sum(s.generated_tokens for s in self.sequences)
