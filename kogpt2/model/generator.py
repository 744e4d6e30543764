"""The model layer's verbs: check a request, load the model, generate.

`check` needs only the tokenizer and the model's positions, so a request the model can't take
is refused before it waits for a slot or the model loads. `load` happens once per process:
loading a model that is ready to serve takes the calling thread a moment; downloading it or
preparing an engine's copy runs in the background while callers are told how far it is.
"""

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from . import engines, hub, prepare, streaming
from .params import DEFAULT_TOTAL_TOKENS, MAX_PROMPT_CHARS, MAX_SEED, GenerationParams
from .results import GenerationResult, Sequence
from .seam import Engine, InvalidInput, ModelLoadError, ModelLoading, Progress, Watch, short_reason
from .source import Source, is_local, local_source, public_name
from .stops import EarlyStop, cut_at_stop
from .vocab import eos_id, load_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """A request this model and server can take: its token ids and how many to add."""

    text: str
    params: GenerationParams
    ids: list[int]
    max_new_tokens: int


@dataclass(frozen=True)
class Vocabulary:
    tokenizer: Tokenizer
    max_positions: int
    eos_id: int


@dataclass(frozen=True)
class Plan:
    """What loading takes: the engine, the source (None: still to download), and the
    directory to load at once (None: something must be downloaded or prepared first)."""

    kind: engines.EngineKind
    source: Source | None
    ready_dir: Path | None


class Generator:
    """Generates Korean text with KoGPT2. Loads on first use; safe to share between threads."""

    def __init__(
        self,
        model: str,
        *,
        engine: str = "auto",
        compute_type: str = "default",
        weight_format: str = "int8",
        threads: int = 1,
        max_new_tokens: int = 256,
        load_retry_s: float = 5.0,
        cache_dir: str | Path | None = None,
        model_name: str | None = None,
        revision: str | None = None,
    ):
        self.model = model
        self.engine_name = engine
        self.compute_type = compute_type
        self.weight_format = weight_format
        self.threads = threads
        self.max_new_tokens = max_new_tokens
        self.load_retry_s = load_retry_s
        self.cache_root = Path(cache_dir) if cache_dir else prepare.default_cache_root()
        self.model_name = model_name
        self.revision = revision  # of a hub id; None: the hub's main branch
        self._engine: Engine | None = None
        self._vocabulary: Vocabulary | None = None
        self._source: Source | None = None
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._progress: Progress | None = None  # set while loading
        self._load_error: ModelLoadError | None = None
        self._failed_at = 0.0
        self.load_count = 0

    # --- what callers may ask at any time, without waiting or loading --------------------------

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def state(self) -> str:
        """not_loaded, loading, ready or failed."""
        if self._engine is not None:
            return "ready"
        if self._progress is not None:
            return "loading"
        return "failed" if self._load_error is not None else "not_loaded"

    @property
    def progress(self) -> Progress | None:
        return self._progress

    @property
    def max_positions(self) -> int | None:
        """Known once the tokenizer has been read; never loads anything."""
        return self._vocabulary.max_positions if self._vocabulary else None

    @property
    def last_load_error(self) -> str | None:
        """Why the last load failed, for the operator's log (it may hold paths)."""
        return str(self._load_error) if self._load_error else None

    @property
    def public_name(self) -> str:
        return public_name(self.model_name, self.model, self._described_source())

    @property
    def public_revision(self) -> str | None:
        source = self._described_source()
        return source.revision if source is not None else self.revision

    def _described_source(self) -> Source | None:
        if self._source is None and is_local(self.model):
            try:
                self._source = local_source(self.model)
            except ModelLoadError:
                return None
        return self._source

    # --- check ----------------------------------------------------------------------------------

    def check(self, text: str, params: GenerationParams | None = None) -> Prompt:
        """Refuse what this model and server can't take; needs the tokenizer, not the model."""
        params = params or GenerationParams()
        if not text.strip():
            raise InvalidInput("text is empty", "text")
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidInput(
                f"text is {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed", "text"
            )
        if params.max_new_tokens is not None and params.max_new_tokens > self.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens is {params.max_new_tokens}; this server allows at most "
                f"{self.max_new_tokens}", "max_new_tokens",
            )
        vocabulary = self.vocabulary()
        ids = vocabulary.tokenizer.encode(text, add_special_tokens=False).ids
        max_new = self._new_token_budget(len(ids), params.max_new_tokens, vocabulary)
        return Prompt(text, params, ids, max_new)

    def vocabulary(self) -> Vocabulary:
        """The tokenizer and positions: from the model's directory if it is on this machine,
        else once the model is loaded (a download starts the load)."""
        if self._vocabulary is None:
            source = self._guarded(self._source_here)
            if source is None:
                self.load()  # raises ModelLoading while it downloads
            else:
                self._vocabulary = self._guarded(lambda: _vocabulary_of(source))
        return self._vocabulary

    def _source_here(self) -> Source | None:
        if is_local(self.model):
            return self._described_source() or local_source(self.model)
        return hub.cached(self.model, self.revision)

    def _new_token_budget(self, prompt_tokens: int, requested: int | None, vocabulary) -> int:
        positions = vocabulary.max_positions
        if prompt_tokens == 0:
            raise InvalidInput("text has nothing the tokenizer can read", "text")
        if prompt_tokens >= positions:
            raise InvalidInput(
                f"text is {prompt_tokens} tokens; the model takes at most {positions - 1} "
                "so that one new token fits", "text",
            )
        if requested is None:
            return max(1, min(DEFAULT_TOTAL_TOKENS - prompt_tokens, self.max_new_tokens))
        if prompt_tokens + requested > positions:
            raise InvalidInput(
                f"text ({prompt_tokens} tokens) + max_new_tokens ({requested}) is over the "
                f"model's {positions} positions; ask for at most {positions - prompt_tokens}",
                "max_new_tokens",
            )
        return requested

    # --- load -----------------------------------------------------------------------------------

    def load(self, *, wait: bool = False) -> Engine:
        """The engine, loaded once. Raises ModelLoading while a download or preparation runs
        in the background (`wait=True` waits for it instead), ModelLoadError if it failed."""
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is not None:
                return self._engine
            worker = self._worker
            if worker is None or not worker.is_alive():
                # A failure is kept for load_retry_s so a burst of requests doesn't retry it each.
                if self._load_error and time.monotonic() - self._failed_at < self.load_retry_s:
                    raise self._load_error
                plan = self._guarded(self._plan)
                if plan.ready_dir is not None:
                    self._progress = Progress("loading the model", 95)
                    try:
                        return self._guarded(
                            lambda: self._load_engine(plan.kind, plan.ready_dir, plan.source)
                        )
                    finally:
                        self._progress = None
                self._progress = Progress("starting", 0)
                worker = self._worker = threading.Thread(
                    target=self._prepare_then_load, args=(plan,), name="kogpt2-prepare",
                    daemon=True,
                )
                worker.start()
            progress = self._progress or Progress("starting", 0)
        if not wait:
            raise ModelLoading(progress)
        worker.join()
        if self._engine is None:
            raise self._load_error
        return self._engine

    def _plan(self) -> Plan:
        if is_local(self.model):
            source = self._source_here()
            own = engines.kind_of(source.path)
            if own is None:
                raise ModelLoadError(
                    f"model directory {str(source.path)!r} holds no model weights that an "
                    "engine reads (model.safetensors, model.bin, openvino_model.xml)"
                )
        else:
            source, own = self._source_here(), engines.TRANSFORMERS
        kind = self._engine_kind(own)
        if own is kind:
            return Plan(kind, source, source.path if source else None)
        if own is not engines.TRANSFORMERS:
            raise ModelLoadError(
                f"{self.model!r} is a {own.name} model directory; the {kind.name} engine needs "
                f"a transformers model (config.json + model.safetensors): set "
                f"KOGPT2_ENGINE={own.name} or auto"
            )
        entry = source and prepare.cached(self.cache_root, source, kind, self.weight_format)
        return Plan(kind, source, entry or None)

    def _engine_kind(self, own: engines.EngineKind) -> engines.EngineKind:
        if self.engine_name != "auto":
            if self.engine_name not in engines.ENGINES:
                raise ModelLoadError(f"unknown engine {self.engine_name!r}")
            return engines.ENGINES[self.engine_name]
        if own is not engines.TRANSFORMERS:
            return own
        return next((k for k in engines.PREFERRED if k.installed()), engines.TRANSFORMERS)

    def _prepare_then_load(self, plan: Plan) -> None:
        """The background load: download and prepare what is missing, then load."""
        try:
            self._guarded(lambda: self._prepare_and_load(plan))
            log.info("the model is ready (%s engine)", plan.kind.name)
        except ModelLoadError as exc:
            log.error("the model could not be loaded: %s", exc)
        finally:
            self._progress = None

    def _prepare_and_load(self, plan: Plan) -> None:
        source, start = plan.source, 0
        if source is None:
            report = self._reporter(0, 50)
            report("downloading the model", 0.0)
            source = hub.download(
                self.model, self.revision, lambda done: report("downloading the model", done)
            )
            start = 50
        ready = source.path
        if plan.kind is not engines.TRANSFORMERS:
            ready = prepare.prepare(
                source, plan.kind, self.weight_format, self.cache_root,
                self._reporter(start, 95),
            )
        self._reporter(95, 100)("loading the model", 0.0)
        self._load_engine(plan.kind, ready, source)

    def _reporter(self, start: int, end: int):
        def report(stage: str, fraction: float | None = None) -> None:
            previous = self._progress
            percent = previous.percent if previous else start
            if fraction is not None:
                percent = max(percent, round(start + (end - start) * fraction))
            if previous is None or previous.stage != stage:
                log.info("preparing the model: %s", stage)
            self._progress = Progress(stage, min(percent, 99))

        return report

    def _guarded(self, work):
        """Run `work`, remembering a failure (any exception is a load error here)."""
        try:
            return work()
        except ModelLoadError as exc:
            self._remember_failure(exc)
            raise
        except Exception as exc:  # a corrupt file can fail anywhere inside a library
            error = ModelLoadError(f"could not load {self.model!r}: {short_reason(exc)}")
            self._remember_failure(error)
            raise error from exc

    def _load_engine(self, kind, model_dir: Path, origin: Source | None) -> Engine:
        here = local_source(str(model_dir))
        # A prepared copy holds its source's tokenizer: the one check() read serves both.
        vocabulary = self._vocabulary or _vocabulary_of(here)
        engine = engines.load(kind, model_dir, threads=self.threads,
                              compute_type=self.compute_type, tokenizer=vocabulary.tokenizer)
        self._vocabulary = vocabulary
        # A prepared copy records the hub id and commit it came from; a snapshot is named by them.
        self._source = here if here.hub_id or origin is None else origin
        self.load_count += 1
        self._engine, self._load_error = engine, None
        return engine

    def _remember_failure(self, exc: ModelLoadError) -> None:
        self._load_error, self._failed_at = exc, time.monotonic()

    # --- generate -------------------------------------------------------------------------------

    def generate(
        self,
        text: str,
        params: GenerationParams | None = None,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token=None,
        stop: tuple[str, ...] = (),
    ) -> GenerationResult:
        """Check and continue `text`; see `run`."""
        return self.run(self.check(text, params), deadline=deadline, cancel=cancel,
                        on_token=on_token, stop=stop)

    def run(
        self,
        prompt: Prompt,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token=None,
        stop: tuple[str, ...] = (),
    ) -> GenerationResult:
        """Continue a checked prompt. Stops at `deadline` (time.monotonic()) with finish
        reason 'time', or when `cancel` is set ('cancelled'); `on_token(id)` hears each new
        token of the first sequence as it is made (EOS included). Each sequence ends before
        the first of the `stop` texts in it ('stop'); one sequence alone stops generating at
        the token that completes it."""
        started = time.monotonic()
        engine = self.load()
        params = prompt.params
        seed = None
        if params.do_sample:
            seed = params.seed if params.seed is not None else secrets.randbelow(MAX_SEED + 1)

        def decode(new_ids: list[int]) -> str:
            return self.continuation(prompt.ids, new_ids)

        if stop and params.num_return_sequences == 1:
            early = EarlyStop(decode, stop, cancel, on_token)
            watch = Watch(deadline, early, early.hear)
        else:  # one engine run holds every sequence: one's stop text must not end the others
            watch = Watch(deadline, cancel, on_token)
        outputs = engine.generate(
            prompt.ids, max_new_tokens=prompt.max_new_tokens, params=params, seed=seed,
            watch=watch,
        )
        sequences = []
        for out in outputs:
            cut = cut_at_stop(decode, out.token_ids, stop) if stop else None
            if cut is None:
                continuation, generated = decode(out.token_ids), len(out.token_ids)
                generated += out.finish_reason == "eos"
                finish_reason = out.finish_reason
            else:
                (continuation, generated), finish_reason = cut, "stop"
            sequences.append(Sequence(prompt.text + continuation, generated, finish_reason))
        return GenerationResult(
            sequences=sequences,
            prompt_tokens=len(prompt.ids),
            seed=seed,
            model=self.public_name,
            engine=engine.name,
            time_ms=round((time.monotonic() - started) * 1000),
        )

    def continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """The text that `new_ids` add after the prompt, with the space between them."""
        return streaming.continuation(self.vocabulary().tokenizer, prompt_ids, new_ids)

    def text_stream(self, prompt: Prompt) -> streaming.TextStream:
        """Turns the ids that `run(prompt, on_token=...)` hears into text, token by token:
        the pieces join to the continuation that run's answer holds."""
        vocabulary = self.vocabulary()
        return streaming.TextStream(vocabulary.tokenizer, prompt.ids, vocabulary.eos_id)


def _vocabulary_of(source: Source) -> Vocabulary:
    tokenizer = load_tokenizer(source.path)
    return Vocabulary(tokenizer, source.max_positions(), eos_id(tokenizer))
