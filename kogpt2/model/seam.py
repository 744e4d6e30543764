"""The seam between the generator and an inference engine: token ids in, token ids out.

Every engine (kogpt2/model/engines/) implements `Engine`; this module is what they share, so
nothing in the model layer imports in a circle: engines import the seam, never each other.
"""

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .params import GenerationParams

# stop: a stop text or one of the stop token ids the caller gave came.
FinishReason = Literal["length", "eos", "stop", "time", "cancelled"]
# What a generated token's log-probability is taken from (vLLM's logprobs_mode, its names):
# raw_logprobs, the model's own distribution; processed_logprobs, the one the token was chosen
# from (sampling.py says which). A prompt's are the model's own in both.
LogprobsMode = Literal["raw_logprobs", "processed_logprobs"]
LOGPROBS_MODES: tuple[LogprobsMode, ...] = ("raw_logprobs", "processed_logprobs")


class InvalidInput(ValueError):
    """The request is well-formed but this model or server can't take it. `field` names the
    request's field at fault (`text`, `prompt`, `max_new_tokens`, `logit_bias`...), for APIs
    that name it otherwise."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ModelLoadError(RuntimeError):
    """The model could not be loaded. The message is for the operator's log, not for callers:
    it may hold paths and library messages."""


# A preparation's steps, as stable keys for pages to say in their own language.
STEPS = ("starting", "downloading", "waiting", "converting", "loading")


@dataclass(frozen=True)
class Progress:
    """Where a model's preparation stands: a stage in words (English, as the engine says it),
    how far it is (0–100), and its step (one of STEPS)."""

    stage: str
    percent: int
    step: str


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
        on_token: Callable[[int, "TokenLogprob | None"], None] | None = None,
    ):
        self.deadline, self.cancel, self.on_token = deadline, cancel, on_token
        self.deadline_hit = False
        self.cancelled = False

    def step(self, token_id: int | None = None, chosen: "TokenLogprob | None" = None) -> bool:
        """After a step; `token_id` is the first sequence's new token (EOS included), `chosen`
        its log-probability when they were asked for and the engine has it as it goes (a
        stream sends it with the token).

        True means stop now: the deadline passed or the caller cancelled.
        """
        if token_id is not None and self.on_token is not None:
            self.on_token(token_id, chosen)
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline_hit = True
        return self.cancelled or self.deadline_hit


# The optional features an engine may implement (GenerationParams.features() names what a
# request asks for); an engine refuses what it lacks before anything queues.
FEATURES = frozenset({
    "logprobs", "prompt_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
    "min_new_tokens", "ignore_eos", "stop_token_ids",
})


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log-probability, and the `n` likeliest tokens of the same distribution,
    best first (ties: the lower id first, as argmax takes it); never -inf."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class EngineRequest:
    """One prompt's rows: `params.num_return_sequences` of them when sampling, else one.

    `seed` is set when sampling: row c's draw at its step k is keyed to (seed, c, k)
    (sampling.exponentials). `watch` is this request's: its deadline, cancel and listener
    (which hears the first row's tokens). `logprobs_mode`: the server's, for params.logprobs."""

    prompt_ids: list[int]
    max_new_tokens: int  # 0: score the prompt only (params.prompt_logprobs)
    params: GenerationParams
    seed: int | None
    watch: "Watch"
    logprobs_mode: LogprobsMode = "raw_logprobs"

    @property
    def rows(self) -> int:
        return self.params.rows


@dataclass(frozen=True)
class EngineOutput:
    """One row. `token_ids`: the new tokens, without the token that ended the row (EOS or a
    stop id: `end_token_id`); `logprobs`: one per token of `token_ids` when asked."""

    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] | None = None
    end_token_id: int | None = None


@dataclass(frozen=True)
class EngineResult:
    """One request's rows in order; the prompt's log-probabilities when asked (the first is
    None: nothing comes before it); how long the request waited before its prompt was read."""

    rows: list[EngineOutput]
    prompt_logprobs: list[TokenLogprob | None] | None = None
    queued_ms: int = 0


class Engine(Protocol):
    name: str
    compute_type: str  # in words, for /info: what the weights are and how they are computed
    features: frozenset[str]  # of FEATURES: what it implements
    max_rows: int  # the most rows that decode in one step

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        """Every request's rows, in order. Thread-safe: a batching engine merges concurrent
        callers' rows into shared steps, a one-at-a-time engine serializes them."""
        ...

    def stats(self) -> dict[str, int]:
        """{"rows_running", "rows_waiting", "max_rows"}, now."""
        ...

    # An engine that can break while loaded (a scheduler thread that died, say) also has
    # `failure`: why it can't serve now, or None; the model's state asks it (engine_failure).


def engine_failure(engine) -> str | None:
    """Why a loaded engine can't serve now, if it says so (its optional `failure`); None for
    an engine that is fine or never fails that way."""
    return getattr(engine, "failure", None)


def refuse_unless(engine_name: str, features: frozenset[str], params: GenerationParams) -> None:
    """InvalidInput naming the engine and the first feature `params` asks that it lacks."""
    missing = sorted(params.features() - features)
    if missing:
        raise InvalidInput(f"the {engine_name} engine does not implement {missing[0]}",
                           missing[0])


def finish(new_ids: list[int], end_ids, max_new_tokens: int, watch: Watch,
           logprobs: list[TokenLogprob] | None = None, eos_id: int | None = None) -> EngineOutput:
    """Cut one row at its first end token (EOS or a stop id, in `end_ids`) and say why it
    ended: `eos` for `eos_id`, `stop` for a stop id. The end token's log-probability stays, last:
    it was generated (lm-eval's loglikelihood drops the last entry as the generated one)."""
    for at, token in enumerate(new_ids):
        if token in end_ids:
            reason = "eos" if token == eos_id else "stop"
            cut = logprobs[: at + 1] if logprobs is not None else None
            return EngineOutput(new_ids[:at], reason, cut, token)
    reason = "length"
    if len(new_ids) < max_new_tokens:
        if watch.cancelled:
            reason = "cancelled"
        elif watch.deadline_hit:
            reason = "time"
    return EngineOutput(new_ids, reason, logprobs)


class Turns:
    """A one-at-a-time engine's queue: callers take turns on its lock, and stats() counts the
    rows running and waiting for their turn."""

    def __init__(self, max_rows: int, lock=None):
        self.max_rows = max_rows
        self.lock = lock or threading.Lock()
        self._running = 0
        self._waiting = 0
        self._count = threading.Lock()

    def stats(self) -> dict[str, int]:
        return {"rows_running": self._running, "rows_waiting": self._waiting,
                "max_rows": self.max_rows}

    @contextlib.contextmanager
    def turn(self, rows: int):
        """Hold the engine for `rows` rows; yields when their turn came (time.monotonic())."""
        with self._count:
            self._waiting += rows
        try:
            self.lock.acquire()
        finally:
            with self._count:
                self._waiting -= rows
        try:
            with self._count:
                self._running += rows
            yield time.monotonic()
        finally:
            with self._count:
                self._running -= rows
            self.lock.release()


def waited_ms(since: float, until: float) -> int:
    return max(0, round((until - since) * 1000))


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
