"""The model layer's verbs: check a request, load the model, generate.

`Generator` is the face of the model layer's parts: where the model comes from (origin.py), its
load (lifecycle.py), the tokenizer's services (tokens.py) and the checks a request passes before
it waits for a slot (checks.py). `check` needs only the tokenizer and the model's positions, so
a request the model can't take is refused before it waits for a slot or the model loads; `run`
continues checked prompts in one engine call.
"""

import functools
import secrets
import threading
import time
from pathlib import Path

from . import checks, cpus, tokens
from .checks import Prompt
from .engines import EngineKind
from .lifecycle import Lifecycle
from .origin import Origin
from .params import MAX_SEED, GenerationParams
from .results import GenerationResult, Sequence
from .seam import Engine, EngineRequest, InvalidInput, LogprobsMode, Progress, Watch, refuse_unless
from .stops import EarlyStop
from .streaming import TextStream
from .tokens import Vocabulary


class Generator:
    """Generates Korean text with KoGPT2. Loads on first use; safe to share between threads."""

    def __init__(self, model: str, *, engine: str = "auto", compute_type: str = "default",
                 weight_format: str = "int8", threads: int | None = None, workers: int = 1,
                 max_new_tokens: int = 256, max_batch_rows: int | None = None,
                 load_retry_s: float = 5.0, load_retry_max_s: float = 300.0,
                 cache_dir: str | Path | None = None, model_name: str | None = None,
                 revision: str | None = None,
                 logprobs_mode: LogprobsMode = "raw_logprobs"):
        # None: the CPUs the container may use, shared by the server's `workers` processes.
        choice = cpus.choose_threads(threads, workers)
        self.threads, self.threads_reason = choice.threads, choice.reason
        self.max_new_tokens = max_new_tokens
        self.logprobs_mode = logprobs_mode  # what a generated token's logprobs are (seam)
        self.origin = Origin(model, engine=engine, weight_format=weight_format,
                             cache_root=cache_dir, model_name=model_name, revision=revision)
        # engines.load's settings, passed through as they are (max_rows None: the engine's own).
        engine_options = dict(threads=self.threads, compute_type=compute_type,
                              max_rows=max_batch_rows)
        self.lifecycle = Lifecycle(self.origin, engine_options, threads_reason=choice.reason,
                                   retry_s=load_retry_s, retry_max_s=load_retry_max_s)

    # --- the model's state (lifecycle.py) and origin (origin.py): never waits or loads ---------

    @property
    def loaded(self) -> bool:
        return self.lifecycle.engine is not None

    @property
    def engine(self) -> Engine | None:
        return self.lifecycle.engine

    @property
    def state(self) -> str:
        """not_loaded, loading, ready or failed."""
        return self.lifecycle.state.value

    @property
    def progress(self) -> Progress | None:
        return self.lifecycle.progress

    @property
    def last_load_error(self) -> str | None:
        return self.lifecycle.last_error

    @property
    def retry_in_s(self) -> float | None:
        return self.lifecycle.retry_in_s

    @property
    def load_count(self) -> int:
        return self.lifecycle.load_count

    def load_history(self) -> list[dict[str, float]]:
        return self.lifecycle.load_history()

    @property
    def max_positions(self) -> int | None:
        """Known once the tokenizer has been read."""
        vocabulary = self.lifecycle.known_vocabulary
        return vocabulary.max_positions if vocabulary else None

    def batch_stats(self) -> dict[str, int | None]:
        """Rows generating now and waiting for the engine, and the most that decode together
        (None before the engine loads)."""
        engine = self.lifecycle.engine
        if engine is None:
            return {"rows_running": 0, "rows_waiting": 0, "max_rows": None}
        return engine.stats()

    @property
    def public_name(self) -> str:
        return self.origin.public_name

    @property
    def public_revision(self) -> str | None:
        return self.origin.public_revision

    def engine_kind(self) -> EngineKind:
        """The engine that serves (or will); a failure to tell counts as a failed load."""
        return self.lifecycle.guarded(self.origin.engine_kind)

    @property
    def features(self) -> frozenset[str]:
        """What the serving engine implements of seam.FEATURES, known without loading."""
        return self.engine_kind().features

    # --- check, load, generate ------------------------------------------------------------------

    def check(self, prompt: str | list[int], params: GenerationParams | None = None) -> Prompt:
        """Refuse what this model and server can't take; needs the tokenizer and the engine's
        kind, not the model. `prompt` is a text or token ids (each inside the vocabulary)."""
        params = params or GenerationParams()
        checks.check_request(prompt, params, self.max_new_tokens)
        kind = self.engine_kind()
        refuse_unless(kind.name, kind.features, params)
        return checks.check_tokens(prompt, params, self.vocabulary(), self.max_new_tokens)

    def start(self) -> None:
        self.lifecycle.start()

    def ready(self) -> bool:
        return self.lifecycle.ready()

    def load(self, *, wait: bool = False) -> Engine:
        return self.lifecycle.load(wait=wait)

    def generate(self, text: str | list[int], params: GenerationParams | None = None, *,
                 deadline: float | None = None, cancel: threading.Event | None = None,
                 on_token=None, stop: tuple[str, ...] = ()) -> GenerationResult:
        """Check and continue `text`; see `run`."""
        return self.run(self.check(text, params), deadline=deadline, cancel=cancel,
                        on_token=on_token, stop=stop)

    def run(self, prompts: Prompt | list[Prompt], *, deadline: float | None = None,
            cancel: threading.Event | None = None, on_token=None,
            stop: tuple[str, ...] = ()) -> GenerationResult | list[GenerationResult]:
        """Continue checked prompts, all rows in one engine call (one batch where the engine
        batches); one GenerationResult per prompt, in order, or one for a single Prompt.

        Stops at `deadline` (time.monotonic()) with finish reason 'time', or when `cancel` is
        set ('cancelled'); `on_token(id, chosen)` hears each new token of the first prompt's
        first sequence as it is made (EOS and stop ids included), with its TokenLogprob when
        logprobs were asked and the engine has it as it goes (else None). Each sequence ends
        before the first of the `stop` texts in it ('stop'); a prompt's one sequence stops
        generating at the token that completes it. Sampling prompts without a seed share one
        drawn seed, which each result reports: a prompt's texts are what the same prompt and
        seed give alone."""
        single = isinstance(prompts, Prompt)
        batch = [prompts] if single else list(prompts)
        if not batch:
            raise InvalidInput("there is no prompt to continue", "prompt")
        started = time.monotonic()
        engine = self.load()
        drawn = secrets.randbelow(MAX_SEED + 1)
        requests = []
        for i, prompt in enumerate(batch):
            params = prompt.params
            seed = (drawn if params.seed is None else params.seed) if params.do_sample else None
            listener = on_token if i == 0 else None
            if stop and prompt.rows == 1:
                early = EarlyStop(functools.partial(self.continuation, prompt.ids), stop,
                                  cancel, listener)
                watch = Watch(deadline, early, early.hear)
            else:  # one engine run holds every sequence: one's stop text must not end the others
                watch = Watch(deadline, cancel, listener)
            requests.append(EngineRequest(prompt.ids, prompt.max_new_tokens, params, seed, watch,
                                          self.logprobs_mode))
        outcomes = engine.generate(requests)
        time_ms = round((time.monotonic() - started) * 1000)
        results = [
            self._result(prompt, request.seed, outcome, stop, engine.name, time_ms)
            for prompt, request, outcome in zip(batch, requests, outcomes, strict=True)
        ]
        return results[0] if single else results

    def _result(self, prompt: Prompt, seed, outcome, stop, engine: str,
                time_ms: int) -> GenerationResult:
        decode = functools.partial(self.continuation, prompt.ids)
        return GenerationResult(
            sequences=[Sequence.of(prompt.text, out, decode, stop) for out in outcome.rows],
            prompt_tokens=len(prompt.ids), seed=seed, model=self.public_name, engine=engine,
            time_ms=time_ms, prompt_ids=prompt.ids, prompt_logprobs=outcome.prompt_logprobs,
            queued_ms=outcome.queued_ms)

    # --- the tokenizer (tokens.py), for APIs that speak in token ids -----------------------------

    def vocabulary(self) -> Vocabulary:
        """From the model's directory if it is on this machine, else once the model is loaded
        (a download starts the load)."""
        return self.lifecycle.vocabulary()

    def continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        return self.vocabulary().continuation(prompt_ids, new_ids)

    def token_pieces(self, prompt_ids: list[int], new_ids: list[int]) -> list[str]:
        return self.vocabulary().token_pieces(prompt_ids, new_ids)

    def text_stream(self, prompt: Prompt) -> TextStream:
        """Turns the ids that `run(prompt, on_token=...)` hears into text, token by token:
        the pieces join to the continuation that run's answer holds."""
        return self.vocabulary().text_stream(prompt.ids, prompt.params)

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.vocabulary().tokenize(text, add_special_tokens)

    def detokenize(self, ids: list[int], field: str = "tokens") -> str:
        return self.vocabulary().detokenize(ids, field)

    def special_tokens(self) -> dict[str, str]:
        return tokens.special_tokens()

    @property
    def vocab_size(self) -> int:
        return self.vocabulary().size
