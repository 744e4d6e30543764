"""What one generation gives back: each sequence's text and why it ended."""

from dataclasses import dataclass

from .seam import FinishReason


@dataclass(frozen=True)
class Sequence:
    text: str
    generated_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class GenerationResult:
    sequences: list[Sequence]
    prompt_tokens: int
    seed: int | None
    model: str
    engine: str
    time_ms: int

    @property
    def finish_reason(self) -> FinishReason:
        reasons = {s.finish_reason for s in self.sequences}
        return "time" if "time" in reasons else self.sequences[0].finish_reason

    @property
    def generated_tokens(self) -> int:
        return max(s.generated_tokens for s in self.sequences)
