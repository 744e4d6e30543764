"""The seam between the generator and an inference engine: token ids in, token ids out.

Every engine (kogpt2/model/engines/) implements `Engine`; this module is what they share, so
nothing in the model layer imports in a circle: engines import the seam, never each other.
"""

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .params import GenerationParams

# stop: a stop text the caller gave appeared (only when the caller gives stop texts).
FinishReason = Literal["length", "eos", "stop", "time", "cancelled"]


class InvalidInput(ValueError):
    """The request is well-formed but this model or server can't take it. `field` names the
    request's field at fault (`text` or `max_new_tokens`), for APIs that name it otherwise."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ModelLoadError(RuntimeError):
    """The model could not be loaded. The message is for the operator's log, not for callers:
    it may hold paths and library messages."""


@dataclass(frozen=True)
class Progress:
    """Where a model's preparation stands: a stage in words, and how far it is (0–100)."""

    stage: str
    percent: int


class ModelLoading(RuntimeError):
    """The model is being prepared (downloaded, converted) and can't answer yet."""

    def __init__(self, progress: Progress):
        super().__init__(f"{progress.stage} ({progress.percent}%)")
        self.progress = progress


class Watch:
    """What a running generation is told: when to stop early, and who wants each new token.

    Engines call `step()` after every decoding step, so the deadline, a cancel and a streaming
    listener all act within one token.
    """

    def __init__(
        self,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[int], None] | None = None,
    ):
        self.deadline, self.cancel, self.on_token = deadline, cancel, on_token
        self.deadline_hit = False
        self.cancelled = False

    def step(self, token_id: int | None = None) -> bool:
        """After a step; `token_id` is the first sequence's new token (EOS included).

        True means stop now: the deadline passed or the caller cancelled.
        """
        if token_id is not None and self.on_token is not None:
            self.on_token(token_id)
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline_hit = True
        return self.cancelled or self.deadline_hit


@dataclass(frozen=True)
class EngineOutput:
    token_ids: list[int]  # new tokens only, without the end-of-sequence token
    finish_reason: FinishReason


class Engine(Protocol):
    name: str
    compute_type: str  # in words, for /info: what the weights are and how they are computed

    def generate(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int,
        params: GenerationParams,
        seed: int | None,
        watch: Watch,
    ) -> list[EngineOutput]: ...


def finish(new_ids: list[int], eos_id: int, max_new_tokens: int, watch: Watch) -> EngineOutput:
    """Cut one sequence at its first EOS and say why it ended."""
    if eos_id in new_ids:
        return EngineOutput(new_ids[: new_ids.index(eos_id)], "eos")
    if len(new_ids) < max_new_tokens:
        if watch.cancelled:
            return EngineOutput(new_ids, "cancelled")
        if watch.deadline_hit:
            return EngineOutput(new_ids, "time")
    return EngineOutput(new_ids, "length")


def short_reason(exc: BaseException) -> str:
    """The first line of an exception, for a log line."""
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1
