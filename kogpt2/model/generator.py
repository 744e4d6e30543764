"""The model layer's verbs: check a request, load the model, generate.

`check` needs only the tokenizer and the model's positions, so a request the model can't take
is refused before it waits for a slot or the model loads. `load` happens once per process:
loading a model that is ready to serve takes the calling thread a moment; downloading it or
preparing an engine's copy runs in the background while callers are told how far it is.
A failed load is tried again after a delay that doubles from `load_retry_s` up to
`load_retry_max_s`: by the next caller once it is due, and by the generator itself once
`start()` was called (a server calls it as it starts: the model becomes ready with no request).
"""

import functools
import logging
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

from tokenizers import Tokenizer

from . import cpus, engines, hub, prepare, streaming
from .params import DEFAULT_TOTAL_TOKENS, MAX_PROMPT_CHARS, MAX_SEED, GenerationParams
from .results import GenerationResult, Sequence
from .seam import (
    Engine,
    EngineRequest,
    InvalidInput,
    LogprobsMode,
    ModelLoadError,
    ModelLoading,
    Progress,
    Watch,
    refuse_unless,
    short_reason,
)
from .source import Source, is_local, local_source, public_name
from .stops import EarlyStop, cut_at_stop
from .vocab import SPECIAL_TOKENS_MAP, eos_id, load_tokenizer

log = logging.getLogger(__name__)
# start()'s thread looks again this often: no faster than this even when load_retry_s is 0,
# and a generator nothing holds any more is let go within it.
BACKGROUND_MIN_WAIT_S = 1.0


@dataclass(frozen=True)
class Prompt:
    """A prompt this model and server can take: its token ids and how many to add. `text` is
    what it was given as, or the decoding of the token ids it was given as."""

    text: str
    params: GenerationParams
    ids: list[int]
    max_new_tokens: int

    @property
    def rows(self) -> int:
        return self.params.rows


@dataclass(frozen=True)
class Vocabulary:
    tokenizer: Tokenizer
    max_positions: int
    eos_id: int


@dataclass(frozen=True)
class Plan:
    """What loading takes: the engine, the source (None: still to download), and the
    directory to load at once (None: something must be downloaded or prepared first), which
    is a prepared copy in the cache when `prepared`."""

    kind: engines.EngineKind
    source: Source | None
    ready_dir: Path | None
    prepared: bool = False


@dataclass(frozen=True)
class Failure:
    """The last load's failure: its reason (for the operator's log: it may hold paths), and
    when the next attempt is due (time.monotonic())."""

    reason: str
    next_attempt_at: float

    def error(self) -> ModelLoadError:
        """A new exception each time it is raised: raising the same one again and again would
        grow its traceback by the frames of every raise."""
        return ModelLoadError(self.reason)


class Generator:
    """Generates Korean text with KoGPT2. Loads on first use; safe to share between threads."""

    def __init__(
        self,
        model: str,
        *,
        engine: str = "auto",
        compute_type: str = "default",
        weight_format: str = "int8",
        threads: int | None = None,
        workers: int = 1,
        max_new_tokens: int = 256,
        max_batch_rows: int | None = None,
        load_retry_s: float = 5.0,
        load_retry_max_s: float = 300.0,
        cache_dir: str | Path | None = None,
        model_name: str | None = None,
        revision: str | None = None,
        logprobs_mode: LogprobsMode = "raw_logprobs",
    ):
        self.model = model
        self.engine_name = engine
        self.compute_type = compute_type
        self.weight_format = weight_format
        # None: the CPUs the container may use, shared by the server's `workers` processes.
        choice = cpus.choose_threads(threads, workers)
        self.threads, self.threads_reason = choice.threads, choice.reason
        self.max_new_tokens = max_new_tokens
        self.max_batch_rows = max_batch_rows  # None: the engine's own cap
        self.load_retry_s = load_retry_s
        self.load_retry_max_s = max(load_retry_max_s, load_retry_s)
        self.cache_root = Path(cache_dir) if cache_dir else prepare.default_cache_root()
        self.model_name = model_name
        self.revision = revision  # of a hub id; None: the hub's main branch
        self.logprobs_mode = logprobs_mode  # what a generated token's logprobs are (seam)
        self._engine: Engine | None = None
        self._vocabulary: Vocabulary | None = None
        self._source: Source | None = None
        self._kind: engines.EngineKind | None = None
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._progress: Progress | None = None  # set while loading
        self._failure: Failure | None = None
        self._failures = 0  # failed load attempts since the last success
        self._started = False  # start() was called: failed loads are retried in the background
        self._set_aside: set[str] = set()  # cache entries set aside by this process
        self._stage_seconds: dict[str, float] = {}  # the load under way: download, prepare
        self._loads: list[dict[str, float]] = []
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
        return "failed" if self._failure is not None else "not_loaded"

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
        return self._failure.reason if self._failure else None

    @property
    def retry_in_s(self) -> float | None:
        """Seconds until a failed load is tried again (0: the next caller tries it); None
        unless the last load failed."""
        failure = self._failure
        if failure is None or self._engine is not None:
            return None
        return max(0.0, failure.next_attempt_at - time.monotonic())

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

    def check(self, prompt: str | list[int], params: GenerationParams | None = None) -> Prompt:
        """Refuse what this model and server can't take; needs the tokenizer and the engine's
        kind, not the model. `prompt` is a text or token ids (each inside the vocabulary)."""
        params = params or GenerationParams()
        field = "text" if isinstance(prompt, str) else "prompt"
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InvalidInput("text is empty", "text")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise InvalidInput(
                    f"text is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed",
                    "text",
                )
        elif not prompt:
            raise InvalidInput("prompt is an empty list of token ids", "prompt")
        if params.max_new_tokens is not None and params.max_new_tokens > self.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens is {params.max_new_tokens}; this server allows at most "
                f"{self.max_new_tokens}", "max_new_tokens",
            )
        refuse_unless(self.engine_kind().name, self.features, params)
        vocabulary = self.vocabulary()
        size = vocabulary.tokenizer.get_vocab_size()
        if isinstance(prompt, str):
            text, ids = prompt, vocabulary.tokenizer.encode(prompt, add_special_tokens=False).ids
        else:
            ids = list(prompt)
            _inside(ids, size, "prompt")
            text = vocabulary.tokenizer.decode(ids, skip_special_tokens=True)
        _inside(params.stop_token_ids, size, "stop_token_ids")
        _inside(params.logit_bias, size, "logit_bias")
        max_new = self._new_token_budget(len(ids), params.max_new_tokens, vocabulary, field)
        if params.min_new_tokens > max_new:
            raise InvalidInput(
                f"min_new_tokens ({params.min_new_tokens}) is over the {max_new} new tokens "
                "this generation makes", "min_new_tokens",
            )
        return Prompt(text, params, ids, max_new)

    def vocabulary(self) -> Vocabulary:
        """The tokenizer and positions: from the model's directory if it is on this machine,
        else once the model is loaded (a download starts the load)."""
        if self._vocabulary is None:
            self._raise_until_due()
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

    def _new_token_budget(self, prompt_tokens: int, requested: int | None, vocabulary,
                          field: str = "text") -> int:
        positions = vocabulary.max_positions
        if prompt_tokens == 0:
            raise InvalidInput(f"{field} has nothing the tokenizer can read", field)
        if prompt_tokens > positions or (prompt_tokens == positions and requested != 0):
            raise InvalidInput(
                f"{field} is {prompt_tokens} tokens; the model takes at most {positions - 1} "
                f"so that one new token fits ({positions} to score it only)", field,
            )
        if requested is None:
            return max(1, min(DEFAULT_TOTAL_TOKENS - prompt_tokens, self.max_new_tokens))
        if prompt_tokens + requested > positions:
            raise InvalidInput(
                f"{field} ({prompt_tokens} tokens) + max_new_tokens ({requested}) is over the "
                f"model's {positions} positions; ask for at most {positions - prompt_tokens}",
                "max_new_tokens",
            )
        return requested

    # --- load -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Load in the background now, and try a failed load again (after its delay) until the
        model is ready, with no caller needed. Returns at once; calling it again does nothing."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=_keep_loading, args=(weakref.ref(self),), name="kogpt2-loader",
                         daemon=True).start()

    def load(self, *, wait: bool = False) -> Engine:
        """The engine, loaded once. Raises ModelLoading while a download or preparation runs
        in the background (`wait=True` waits for it instead), ModelLoadError if it failed and
        its next attempt isn't due yet, or if this attempt fails."""
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is not None:
                return self._engine
            worker = self._worker
            if worker is None or not worker.is_alive():
                self._raise_until_due()
                engine = self._attempt()
                if engine is not None:
                    return engine
                worker = self._worker
            progress = self._progress or Progress("starting", 0, "starting")
        if not wait:
            raise ModelLoading(progress)
        worker.join()
        if self._engine is None:
            raise self._failure.error()
        return self._engine

    def _raise_until_due(self) -> None:
        failure = self._failure
        if failure is not None and time.monotonic() < failure.next_attempt_at:
            raise failure.error()

    def _attempt(self) -> Engine | None:
        """One attempt (the lock held): load a model that is ready to serve now, or start the
        background download and preparation (None)."""
        plan, damaged = self._guarded(self._plan), None
        if plan.ready_dir is not None:
            self._progress = Progress("loading the model", 95, "loading")
            try:
                return self._load_engine(plan.kind, plan.ready_dir, plan.source, plan.prepared)
            except Exception as exc:
                if not self._may_set_aside(plan):
                    self._raise_failed(exc)
                # Set aside by the worker: another process may hold the entry's lock a while.
                self._set_aside.add(plan.ready_dir.name)
                damaged = (plan.ready_dir, exc, _marker_id(plan.ready_dir))
                plan = replace(plan, ready_dir=None, prepared=False)
            finally:
                self._progress = None
        # What the worker does first, said before it starts: callers see one story.
        if plan.source is None:
            self._progress = Progress("downloading the model", 0, "downloading")
        else:
            self._progress = Progress(f"preparing for the {plan.kind.name} engine", 0,
                                      "converting")
        self._worker = threading.Thread(target=self._prepare_then_load, args=(plan, damaged),
                                        name="kogpt2-prepare", daemon=True)
        self._worker.start()
        return None

    def _plan(self) -> Plan:
        source, own = self._source_here(), self._own_kind()
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
        return Plan(kind, source, entry or None, prepared=bool(entry))

    def cache_entry(self) -> Path | None:
        """The prepared copy in the cache that this generator serves, if it serves one and it
        is there; looks only at this machine (scripts/cache.py names it "in use")."""
        plan = self._plan()
        return plan.ready_dir if plan.prepared else None

    def _own_kind(self) -> engines.EngineKind:
        """The format of the model as given: a directory's own, or a hub model's
        (transformers)."""
        if not is_local(self.model):
            return engines.TRANSFORMERS
        source = self._source_here()
        own = engines.kind_of(source.path)
        if own is None:
            raise ModelLoadError(
                f"model directory {str(source.path)!r} holds no model weights that an "
                "engine reads (model.safetensors, model.bin, openvino_model.xml)"
            )
        return own

    def engine_kind(self) -> engines.EngineKind:
        """The engine that serves (or will): known without loading anything."""
        if self._kind is None:
            self._kind = self._guarded(lambda: self._engine_kind(self._own_kind()))
        return self._kind

    @property
    def features(self) -> frozenset[str]:
        """What the serving engine implements of seam.FEATURES, known without loading."""
        return self.engine_kind().features

    def _engine_kind(self, own: engines.EngineKind) -> engines.EngineKind:
        if self.engine_name != "auto":
            if self.engine_name not in engines.ENGINES:
                raise ModelLoadError(f"unknown engine {self.engine_name!r}")
            return engines.ENGINES[self.engine_name]
        if own is not engines.TRANSFORMERS:
            return own
        return next((k for k in engines.PREFERRED if k.installed()), engines.TRANSFORMERS)

    def _prepare_then_load(self, plan: Plan, damaged: tuple | None = None) -> None:
        """The background load: set aside a `damaged` copy (its path, and why), download and
        prepare what is missing, then load."""
        try:
            if damaged is not None:
                self._move_aside(*damaged)
            self._prepare_and_load(plan)
        except Exception as exc:
            self._failed(exc)
        finally:
            self._progress = None

    def _prepare_and_load(self, plan: Plan) -> None:
        source, start = plan.source, 0
        if source is None:
            report = self._reporter(0, 50, "downloading")
            report("downloading the model", 0.0)
            source = self._timed("download", lambda: hub.download(
                self.model, self.revision, lambda done, total: report(
                    "downloading the model", done / total if total else 1.0)))
            start = 50
        if plan.kind is engines.TRANSFORMERS:
            self._reporter(95, 100, "loading")("loading the model", 0.0)
            self._load_engine(plan.kind, source.path, source)
            return
        for _ in range(2):  # a prepared copy that fails to load is prepared again, once
            entry = self._timed("prepare", lambda: prepare.prepare(
                source, plan.kind, self.weight_format, self.cache_root,
                self._reporter(start, 95, "converting")))
            self._reporter(95, 100, "loading")("loading the model", 0.0)
            try:
                self._load_engine(plan.kind, entry, source, prepared=True)
                return
            except Exception as exc:
                prepared = Plan(plan.kind, source, entry, prepared=True)
                if not self._may_set_aside(prepared):
                    raise
                self._set_aside.add(entry.name)
                self._move_aside(entry, exc, _marker_id(entry))

    def _may_set_aside(self, plan: Plan) -> bool:
        """Whether a prepared copy that failed to load may be set aside and prepared again: a
        cache entry, once per process (after that the failure stands, with its reason)."""
        return plan.prepared and plan.ready_dir.name not in self._set_aside

    def _move_aside(self, entry: Path, exc: Exception, marker_id: str | None) -> None:
        """Move the copy that failed (`marker_id` names it) aside, unless another process has
        replaced it meanwhile."""
        aside = prepare.set_aside(entry, marker_id)
        where = f"moved to {aside}" if aside else "another process replaced it meanwhile"
        log.warning("the prepared copy %s failed to load (%s): %s; preparing it again",
                    entry, short_reason(exc), where)

    def _reporter(self, start: int, end: int, step: str):
        def report(stage: str, fraction: float | None = None, substep: str | None = None) -> None:
            previous = self._progress
            percent = previous.percent if previous else start
            if fraction is not None:
                percent = max(percent, round(start + (end - start) * fraction))
            if previous is None or previous.stage != stage:
                log.info("preparing the model: %s", stage)
            self._progress = Progress(stage, min(percent, 99), substep or step)

        return report

    def _guarded(self, work):
        """Run `work`; a failure (any exception is a load error here) is remembered."""
        try:
            return work()
        except Exception as exc:  # a corrupt file can fail anywhere inside a library
            self._raise_failed(exc)

    def _raise_failed(self, exc: Exception):
        error = self._failed(exc)
        if error is exc:
            raise error
        raise error from exc

    def _failed(self, exc: Exception) -> ModelLoadError:
        """Remember a failed attempt, say so in one log line, and return the error to raise."""
        error = exc if isinstance(exc, ModelLoadError) else ModelLoadError(
            f"could not load {self.model!r}: {short_reason(exc)}")
        self._failures += 1
        delay = min(self.load_retry_max_s, self.load_retry_s * 2 ** (self._failures - 1))
        self._failure = Failure(str(error), time.monotonic() + delay)
        then = "by itself" if self._started else "by the next caller"
        log.error("the model could not be loaded (attempt %d): %s; it is tried again %s in %s s",
                  self._failures, error, then, f"{delay:g}")
        return error

    def _timed(self, stage: str, work):
        started = time.monotonic()
        try:
            return work()
        finally:
            self._stage_seconds[stage] = (self._stage_seconds.get(stage, 0.0)
                                          + time.monotonic() - started)

    def load_history(self) -> list[dict[str, float]]:
        """Each finished load's seconds by stage: download and prepare (when they ran), load."""
        return list(self._loads)

    def _load_engine(self, kind, model_dir: Path, origin: Source | None,
                     prepared: bool = False) -> Engine:
        """Load `model_dir`; a `prepared` copy of the cache is checked against its seal first
        (a directory of the operator's is theirs to edit: its engine checks what it reads)."""
        started = time.monotonic()
        here = local_source(str(model_dir))
        if prepared:
            prepare.check_entry(model_dir)  # a truncated file fails here, not in the engine
        # A prepared copy holds its source's tokenizer: the one check() read serves both.
        vocabulary = self._vocabulary or _vocabulary_of(here)
        engine = engines.load(kind, model_dir, threads=self.threads,
                              compute_type=self.compute_type, tokenizer=vocabulary.tokenizer,
                              max_rows=self.max_batch_rows)
        self._vocabulary = vocabulary
        # A prepared copy records the hub id and commit it came from; a snapshot is named by them.
        self._source = here if here.hub_id or origin is None else origin
        self.load_count += 1
        log.info("the model is ready: %s engine, %d threads (%s), attempt %d", kind.name,
                 self.threads, self.threads_reason, self._failures + 1)
        self._loads.append({**self._stage_seconds, "load": time.monotonic() - started})
        self._stage_seconds = {}
        self._engine, self._failure, self._failures = engine, None, 0
        return engine

    # --- generate -------------------------------------------------------------------------------

    def generate(
        self,
        text: str | list[int],
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
        prompts: Prompt | list[Prompt],
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token=None,
        stop: tuple[str, ...] = (),
    ) -> GenerationResult | list[GenerationResult]:
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
            seed = None
            if params.do_sample:
                seed = params.seed if params.seed is not None else drawn
            listener = on_token if i == 0 else None
            if stop and prompt.rows == 1:
                early = EarlyStop(self._decoder(prompt), stop, cancel, listener)
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

    def _decoder(self, prompt: Prompt):
        return functools.partial(self.continuation, prompt.ids)

    def _result(self, prompt: Prompt, seed, outcome, stop, engine: str,
                time_ms: int) -> GenerationResult:
        decode = self._decoder(prompt)
        sequences = []
        for out in outcome.rows:
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
            sequences.append(Sequence(prompt.text + continuation, generated, finish_reason,
                                      out.token_ids[:kept], logprobs, stop_text))
        return GenerationResult(
            sequences=sequences,
            prompt_tokens=len(prompt.ids),
            seed=seed,
            model=self.public_name,
            engine=engine,
            time_ms=time_ms,
            prompt_ids=prompt.ids,
            prompt_logprobs=outcome.prompt_logprobs,
            queued_ms=outcome.queued_ms,
        )

    # --- the tokenizer, for APIs that speak in token ids ----------------------------------------

    def continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """The text that `new_ids` add after the prompt, with the space between them."""
        return streaming.continuation(self.vocabulary().tokenizer, prompt_ids, new_ids)

    def token_pieces(self, prompt_ids: list[int], new_ids: list[int]) -> list[str]:
        """Each new token's text: they join to exactly `continuation(prompt_ids, new_ids)`.
        A token that only begins a character is "" and the one completing it holds it whole."""
        return streaming.token_pieces(self.vocabulary().tokenizer, prompt_ids, new_ids)

    def text_stream(self, prompt: Prompt) -> streaming.TextStream:
        """Turns the ids that `run(prompt, on_token=...)` hears into text, token by token:
        the pieces join to the continuation that run's answer holds."""
        vocabulary = self.vocabulary()
        params = prompt.params
        ends = {*params.stop_token_ids, *(() if params.ignore_eos else (vocabulary.eos_id,))}
        return streaming.TextStream(vocabulary.tokenizer, prompt.ids, end_ids=ends)

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.vocabulary().tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def detokenize(self, ids: list[int], field: str = "tokens") -> str:
        """The text of token ids, special tokens included; ids outside the vocabulary are
        refused (InvalidInput naming `field`)."""
        tokenizer = self.vocabulary().tokenizer
        _inside(ids, tokenizer.get_vocab_size(), field)
        return tokenizer.decode(ids, skip_special_tokens=False)

    def special_tokens(self) -> dict[str, str]:
        """eos_token, bos_token, pad_token, unk_token (KoGPT2's BOS is its EOS)."""
        names = ("eos_token", "bos_token", "pad_token", "unk_token")
        return {name: SPECIAL_TOKENS_MAP[name] for name in names}

    @property
    def vocab_size(self) -> int:
        return self.vocabulary().tokenizer.get_vocab_size()

    def batch_stats(self) -> dict[str, int | None]:
        """Rows generating now and waiting for the engine, and the most that decode together
        (None before the engine loads)."""
        if self._engine is None:
            return {"rows_running": 0, "rows_waiting": 0, "max_rows": None}
        return self._engine.stats()


def _inside(ids, size: int, field: str) -> None:
    """Refuse token ids outside 0 .. size-1."""
    bad = next((token for token in ids if not 0 <= token < size), None)
    if bad is not None:
        raise InvalidInput(
            f"{field} holds token id {bad}, outside the vocabulary (0 to {size - 1})", field
        )


def _vocabulary_of(source: Source) -> Vocabulary:
    tokenizer = load_tokenizer(source.path)
    return Vocabulary(tokenizer, source.max_positions(), eos_id(tokenizer))


def _marker_id(entry: Path) -> str | None:
    return (prepare.read_marker(entry) or {}).get("id")


def _keep_loading(ref: weakref.ref) -> None:
    """start()'s thread: attempt the load whenever one is due, until it succeeds. It holds the
    generator only while it works, and ends once nothing else holds it."""
    while True:
        generator = ref()
        if generator is None or generator.loaded:
            return
        wait = generator.retry_in_s or 0.0
        if wait == 0:
            try:
                generator.load(wait=True)
            except ModelLoadError:
                pass  # logged, with when it is tried again
            wait = BACKGROUND_MIN_WAIT_S
        del generator
        time.sleep(min(wait, BACKGROUND_MIN_WAIT_S))
