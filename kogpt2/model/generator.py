"""The model layer's two verbs, load and generate, with a lazy, once-per-process load."""

import secrets
import threading
import time

from .engine import Engine, ModelLoadError, load_engine, short_reason
from .params import (
    DEFAULT_TOTAL_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    GenerationParams,
    GenerationResult,
    Sequence,
)


class InvalidInput(ValueError):
    """The request is well-formed but this model or server can't take it."""


class Generator:
    """Generates Korean text with KoGPT2. Loads on first use; safe to share between threads."""

    def __init__(
        self,
        model: str,
        *,
        engine: str = "auto",
        compute_type: str = "default",
        threads: int = 1,
        max_new_tokens: int = 256,
        load_retry_s: float = 5.0,
    ):
        self.model = model
        self.engine_name = engine
        self.compute_type = compute_type
        self.threads = threads
        self.max_new_tokens = max_new_tokens
        self.load_retry_s = load_retry_s
        self._engine: Engine | None = None
        self._load_lock = threading.Lock()
        self._load_error: ModelLoadError | None = None
        self._failed_at = 0.0
        self.load_count = 0

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def last_load_error(self) -> str | None:
        return str(self._load_error) if self._load_error else None

    def load(self) -> Engine:
        """Load the model once; concurrent callers wait for the one load in progress."""
        if self._engine is not None:
            return self._engine
        with self._load_lock:
            if self._engine is not None:
                return self._engine
            # A failure is kept for load_retry_s so a burst of requests doesn't retry it each.
            if self._load_error and time.monotonic() - self._failed_at < self.load_retry_s:
                raise self._load_error
            try:
                engine = load_engine(self.model, self.engine_name, self.threads, self.compute_type)
            except ModelLoadError as exc:
                self._remember_failure(exc)
                raise
            except Exception as exc:  # a corrupt file can fail anywhere inside a library
                error = ModelLoadError(f"could not load {self.model!r}: {short_reason(exc)}")
                self._remember_failure(error)
                raise error from exc
            self.load_count += 1
            self._engine, self._load_error = engine, None
            return engine

    def _remember_failure(self, exc: ModelLoadError) -> None:
        self._load_error, self._failed_at = exc, time.monotonic()

    def generate(
        self, text: str, params: GenerationParams | None = None, *, deadline: float | None = None
    ) -> GenerationResult:
        """Continue `text`. Stops at `deadline` (time.monotonic()) with finish_reason 'time'."""
        started = time.monotonic()
        params = params or GenerationParams()
        if not text.strip():
            raise InvalidInput("text is empty")
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidInput(
                f"text is {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed"
            )
        engine = self.load()
        prompt_ids = engine.encode(text)
        max_new = self._new_token_budget(
            len(prompt_ids), params.max_new_tokens, engine.max_positions
        )
        seed = None
        if params.do_sample:
            seed = params.seed if params.seed is not None else secrets.randbelow(MAX_SEED + 1)
        outputs = engine.generate(
            prompt_ids, max_new_tokens=max_new, params=params, seed=seed, deadline=deadline
        )
        prompt_text = engine.decode(prompt_ids)
        sequences = [
            Sequence(
                text=text + _continuation(engine, prompt_ids, prompt_text, out.token_ids),
                generated_tokens=len(out.token_ids) + (out.finish_reason == "eos"),
                finish_reason=out.finish_reason,
            )
            for out in outputs
        ]
        return GenerationResult(
            sequences=sequences,
            prompt_tokens=len(prompt_ids),
            seed=seed,
            model=self.model,
            engine=engine.name,
            time_ms=round((time.monotonic() - started) * 1000),
        )

    def _new_token_budget(self, prompt_tokens: int, requested: int | None, positions: int) -> int:
        if prompt_tokens == 0:
            raise InvalidInput("text has nothing the tokenizer can read")
        if prompt_tokens >= positions:
            raise InvalidInput(
                f"text is {prompt_tokens} tokens; the model takes at most {positions - 1} "
                "so that one new token fits"
            )
        if requested is None:
            return max(1, min(DEFAULT_TOTAL_TOKENS - prompt_tokens, self.max_new_tokens))
        if requested > self.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens is {requested}; this server allows at most {self.max_new_tokens}"
            )
        if prompt_tokens + requested > positions:
            raise InvalidInput(
                f"text ({prompt_tokens} tokens) + max_new_tokens ({requested}) is over the "
                f"model's {positions} positions; ask for at most {positions - prompt_tokens}"
            )
        return requested


def _continuation(engine: Engine, prompt_ids: list[int], prompt_text: str, new_ids: list[int]):
    # Decoding the new tokens alone would drop the space between the title and the text.
    full = engine.decode(prompt_ids + new_ids)
    if full.startswith(prompt_text):
        return full[len(prompt_text):]
    return " " + engine.decode(new_ids)
