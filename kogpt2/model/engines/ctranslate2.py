"""The small engine: a CTranslate2 model (int8 by default) that serves without torch.

It is the engine for arm64 (OpenVINO has no wheels for the Lambda base image there) and the
one with the smallest memory. `prepare()` converts a transformers directory into its format;
serving imports neither torch nor transformers.
"""

import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import numpy

from .. import sampling
from ..seam import (
    EngineOutput,
    EngineRequest,
    EngineResult,
    ModelLoadError,
    TokenLogprob,
    finish,
    refuse_unless,
    short_reason,
    waited_ms,
)
from ..vocab import EOS_TOKEN, SPECIAL_TOKENS_MAP, eos_id
from . import CTRANSLATE2

NAME = "ctranslate2"
WEIGHT_FORMATS = {"int8": "int8", "float32": "float32", "int8_float32": "int8_float32"}
# ctranslate2.set_random_seed is process-wide: a seeded run must not interleave with another.
GENERATION_LOCK = threading.Lock()


class CTranslate2Engine:
    name = NAME
    features = CTRANSLATE2.features

    def __init__(self, model_dir: Path, *, threads: int, compute_type: str, tokenizer,
                 max_rows: int = CTRANSLATE2.max_rows):
        self.model_dir = model_dir
        # Rows of one generate_batch. Each returns every step's logits (the first-token
        # penalty's fix, logprobs): 200 KB a step a row, so a batch is cut in chunks of these.
        self.max_rows = max_rows
        self.tokenizer = tokenizer  # start tokens go in as token strings
        self.eos_id = eos_id(self.tokenizer)
        self._load_options = dict(device="cpu", compute_type=compute_type,
                                  intra_threads=threads)
        # The one live ctranslate2.Generator. It is dropped while the interpreter still runs:
        # one that ran a callback aborts the process if it is left to the interpreter's exit.
        self._live = [self._open()]
        weakref.finalize(self, self._live.clear)
        self.compute_type = self._live[0].compute_type
        self._fresh = True  # the live generator has not sampled yet
        self._queue: list[_Call] = []  # calls waiting for the engine
        self._queue_lock = threading.Lock()
        self._running = 0  # rows being generated
        # While a call is served: a scored prompt's last row of log-probabilities, by request,
        # when its first new token's raw_logprobs are asked (lm-eval: echo, one new token).
        self._after_prompt: dict[int, numpy.ndarray] = {}

    def _open(self):
        return ctranslate2.Generator(str(self.model_dir), **self._load_options)

    def _generator(self):
        if not self._live:  # a swap whose open failed is retried here
            self._live.append(self._open())
        return self._live[0]

    def _renew(self) -> None:
        """Replace a generator that has sampled; call with GENERATION_LOCK held."""
        # CTranslate2 seeds a worker thread's random engine once, the first time it samples
        # (it is thread_local), so set_random_seed can't reseed a generator that has sampled:
        # only a new one, whose worker hasn't drawn yet, starts from the seed.
        if not self._fresh:
            self._live.clear()  # free the old one first: one model in memory at a time
            self._generator()
            self._fresh = True

    def _renew_later(self) -> None:
        # Opening takes ~0.1 s: done after the answer, the next sampled request doesn't wait.
        with GENERATION_LOCK, contextlib.suppress(Exception):  # the next request retries
            self._renew()

    def stats(self) -> dict[str, int]:
        with self._queue_lock:
            waiting = sum(call.rows for call in self._queue)
        return {"rows_running": self._running, "rows_waiting": waiting,
                "max_rows": self.max_rows}

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        """Calls that come while the engine is busy wait together; the first of them to get it
        serves them all at once: their greedy rows as rows of shared generate_batch calls."""
        for request in requests:
            refuse_unless(self.name, self.features, request.params)
        call = _Call(requests)
        with self._queue_lock:
            self._queue.append(call)
        with GENERATION_LOCK:
            if call.results is None and call.error is None:  # else another call served it
                with self._queue_lock:
                    calls, self._queue = self._queue, []
                self._serve(calls)
        if call.error is not None:
            raise call.error
        return call.results

    def _serve(self, calls: list["_Call"]) -> None:
        """Every call's requests, with GENERATION_LOCK held; a failure fails them all."""
        started = time.monotonic()
        requests = [request for call in calls for request in call.requests]
        self._running = sum(call.rows for call in calls)
        sampled = [i for i, request in enumerate(requests) if request.params.do_sample]
        try:
            outputs: dict[int, list[EngineOutput]] = {}
            scored = [self._prompt_logprobs(request) for request in requests]
            greedy = [i for i, request in enumerate(requests) if not request.params.do_sample]
            outputs.update(zip(greedy, self._greedy([requests[i] for i in greedy]), strict=True))
            for i in sampled:  # each from its own seed: a fresh generator each
                self._renew()
                ctranslate2.set_random_seed(requests[i].seed)
                self._fresh = False
                outputs[i] = self._sample(requests[i])
        except BaseException as exc:
            for call in calls:
                call.error = exc
            raise
        finally:
            self._running = 0
            self._after_prompt = {}
            if sampled:
                threading.Thread(target=self._renew_later, name="ct2-renew", daemon=True).start()
        at = 0
        for call in calls:
            queued_ms = waited_ms(call.arrived, started)
            call.results = [EngineResult(outputs[i], scored[i], queued_ms)
                            for i in range(at, at + len(call.requests))]
            at += len(call.requests)

    def _prompt_logprobs(self, request: EngineRequest):
        n = request.params.prompt_logprobs
        if n is None:
            return None
        if len(request.prompt_ids) == 1:
            return [None]
        logprobs = self._forward(request.prompt_ids)
        if request.params.logprobs is not None and request.logprobs_mode == "raw_logprobs":
            self._after_prompt[id(request)] = logprobs[-1]  # the first new token's
        return sampling.prompt_logprobs(logprobs, request.prompt_ids, n)

    def _forward(self, ids: list[int]) -> numpy.ndarray:
        """The model's log-probabilities of the next token after each of `ids`."""
        return numpy.asarray(self._generator().forward_batch([ids], return_log_probs=True))[0]

    def _options(self, params, rows: list["_Row"]) -> dict:
        """generate_batch's options for rows of one kind (_Row.kind)."""
        longest = max(len(row.start) + row.remaining for row in rows)
        options = dict(
            # With the prompt in the result, CTranslate2's repetition penalty covers the title
            # as transformers' does, but for its first token (see _greedy). It replays the
            # prompt token by token as decoding steps; each row stops at its own budget (the
            # callback), the longest sets max_length.
            include_prompt_in_result=True,
            max_length=longest,
            repetition_penalty=params.repetition_penalty,
            end_token=sorted(rows[0].end_ids),
            return_end_token=True,
            min_length=rows[0].min_length,
            return_logits_vocab=any(row.needs_logits for row in rows),
        )
        if params.ignore_eos:
            options["suppress_sequences"] = [[EOS_TOKEN]]
        if params.do_sample:
            options.update(
                sampling_topk=params.top_k,  # 0 samples from the whole vocabulary, as top_k=0 does
                sampling_topp=params.top_p,
                sampling_temperature=params.temperature,
            )
        return options

    def _run(self, rows: list["_Row"], options: dict):
        """One generate_batch over `rows`; each row's new tokens, and its steps' logits when
        options ask for them (one per step, the replayed start's included)."""
        def step(result) -> bool:  # True ends that row
            row = rows[result.batch_id]
            if result.step < len(row.start) - 1:  # replaying the start, as others prefill it
                return False
            if result.token_id == row.stop_at:  # the caller decides whether it stands
                row.stopped = True
                return True
            row.made += 1
            stop = row.request.watch.step(result.token_id if row.listen else None)
            return stop or row.made >= row.remaining

        starts = [[self.tokenizer.id_to_token(i) for i in row.start] for row in rows]
        results = self._generator().generate_batch(starts, callback=step, **options)
        for row, result in zip(rows, results, strict=True):
            # CTranslate2 leaves a leading end-of-text token out of the sequence it returns
            shown = len(row.start) - (row.start[0] == self.eos_id)
            new = result.sequences_ids[0][shown:]
            logits = result.logits[0] if options["return_logits_vocab"] else None
            yield row, new[: row.remaining], logits

    def _greedy(self, requests: list[EngineRequest]) -> list[list[EngineOutput]]:
        """Greedy rows, batched: rows of one kind share a generate_batch.

        CTranslate2 penalises every token of the sequence but the one decoding starts from,
        the title's first. Where that token comes out on top and the title doesn't hold it
        again, the row stops there; its choice is made again with the penalty transformers
        puts on it, and the row goes on from there in the next round."""
        rows = [_Row(request, 0, self.eos_id) for request in requests]
        going = [row for row in rows if row.remaining > 0]
        while going:
            for kind in _kinds(going):
                params = kind[0].request.params
                for at in range(0, len(kind), self.max_rows):
                    chunk = kind[at: at + self.max_rows]
                    for row in chunk:
                        row.round(penalty=params.repetition_penalty)
                    for row, new, logits in self._run(chunk, self._options(params, chunk)):
                        self._settle(row, new, logits)
            going = [row for row in rows if not row.done]
        self._raw_logprobs(rows)
        return [[row.output()] for row in rows]

    def _settle(self, row: "_Row", new: list[int], logits) -> None:
        """Take a round's tokens; a row stopped at its first token chooses again."""
        base = len(row.start) - 1  # the step whose logits chose the first new token
        if row.stopped:
            new = new[:-1]
        for j, token in enumerate(new):
            row.take(token, self._fixed(row, logits[base + j]) if row.processed else None)
        if not row.stopped:
            row.done = True
            return
        scores = self._fixed(row, logits[base + len(new)])
        chosen = int(scores.argmax())
        row.take(chosen, scores if row.processed else None)
        stop = row.request.watch.step(chosen if row.listen else None)
        row.done = stop or chosen in row.end_ids or row.remaining == 0

    def _fixed(self, row: "_Row", step_logits) -> numpy.ndarray:
        """A step's logits with the penalty CTranslate2 left off the title's first token."""
        scores = numpy.array(step_logits, dtype=numpy.float32)
        first, penalty = row.request.prompt_ids[0], row.request.params.repetition_penalty
        if penalty != 1.0 and first not in row.seen_after_first():
            sampling.penalize(scores, [first], penalty)
        return scores

    def _sample(self, request: EngineRequest) -> list[EngineOutput]:
        """A request's sampled rows, in one generate_batch from one seeded stream (rows share
        it: CTranslate2 draws for all its rows from one generator)."""
        rows = [_Row(request, choice, self.eos_id) for choice in range(request.rows)]
        if request.max_new_tokens:
            for row in rows:
                row.round(penalty=1.0)  # sampling keeps CTranslate2's penalty as it is
            for row, new, logits in self._run(rows, self._options(request.params, rows)):
                base = len(row.start) - 1
                for j, token in enumerate(new):
                    processed = None
                    if row.processed:
                        processed = numpy.array(logits[base + j], dtype=numpy.float32)
                    row.take(token, processed)
        self._raw_logprobs(rows)
        return [row.output() for row in rows]

    def _raw_logprobs(self, rows: list["_Row"]) -> None:
        """raw_logprobs: each new token's log-probability in the model's own distribution.
        generate_batch gives only processed logits (the penalty in, masked tokens at -inf), so
        one forward pass over a row's title and tokens gives them, as it scores a prompt."""
        for row in rows:
            if row.logprobs is None or row.processed or not row.new:
                continue
            prompt, n = row.request.prompt_ids, row.request.params.logprobs
            after_prompt = self._after_prompt.get(id(row.request))
            if len(row.new) == 1 and after_prompt is not None:
                steps = [after_prompt]  # the prompt's scoring read it already
            else:
                steps = self._forward(prompt + row.new[:-1])[len(prompt) - 1:]
            row.logprobs = [sampling.token_logprob(step, token, n)
                            for step, token in zip(steps, row.new, strict=True)]


class _Call:
    """One generate() call: its requests, then their results or what failed them."""

    def __init__(self, requests: list[EngineRequest]):
        self.requests = requests
        self.rows = sum(request.rows for request in requests)
        self.arrived = time.monotonic()
        self.results: list[EngineResult] | None = None
        self.error: BaseException | None = None


class _Row:
    """One row of a CTranslate2 generation across rounds (a round: one generate_batch)."""

    def __init__(self, request: EngineRequest, choice: int, eos: int):
        params = request.params
        self.request, self.eos = request, eos
        self.listen = choice == 0  # the request's watch hears its first row
        self.new: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        # processed_logprobs: each token's, from the logits it was chosen from, as they come
        self.processed = (params.logprobs is not None
                          and request.logprobs_mode == "processed_logprobs")
        self.end_ids = frozenset(params.stop_token_ids) | (
            frozenset() if params.ignore_eos else {eos})
        self.done = False

    @property
    def start(self) -> list[int]:
        return self.request.prompt_ids + self.new

    @property
    def remaining(self) -> int:
        return self.request.max_new_tokens - len(self.new)

    @property
    def min_length(self) -> int:
        """CTranslate2's min_length (it counts the replayed start but its first token)."""
        left = self.request.params.min_new_tokens - len(self.new)
        return len(self.start) - 1 + left if left > 0 else 0

    @property
    def kind(self) -> tuple:
        """Rows of one kind can share a generate_batch (whose options are per batch)."""
        params = self.request.params
        return (params.repetition_penalty, params.ignore_eos, tuple(params.stop_token_ids),
                self.min_length)

    @property
    def needs_logits(self) -> bool:
        return self.stop_at is not None or self.processed

    def seen_after_first(self) -> list[int]:
        return self.request.prompt_ids[1:] + self.new

    def round(self, *, penalty: float) -> None:
        """Before a round: where it must stop (the title's first token, while unpenalised)."""
        first = self.request.prompt_ids[0]
        unpenalised = penalty != 1.0 and first not in self.seen_after_first()
        self.stop_at = first if unpenalised else None
        self.stopped = False
        self.made = 0

    def take(self, token: int, scores: numpy.ndarray | None) -> None:
        """A new token, and the scores it was chosen from (processed_logprobs)."""
        if scores is not None:
            self.logprobs.append(_logprob(scores, token, self.request.params))
        self.new.append(token)

    def output(self) -> EngineOutput:
        request = self.request
        return finish(self.new, self.end_ids, request.max_new_tokens, request.watch,
                      self.logprobs, self.eos)


def _kinds(rows: list[_Row]) -> list[list[_Row]]:
    kinds: dict[tuple, list[_Row]] = {}
    for row in rows:
        kinds.setdefault(row.kind, []).append(row)
    return list(kinds.values())


def _logprob(scores: numpy.ndarray, token: int, params) -> TokenLogprob:
    """processed_logprobs, from the processed logits `token` was chosen from: greedy, their
    log-softmax; sampled, after the warpers (transformers' rules, which CTranslate2's follow
    but for ties at the top-k edge: a drawn token outside them still counts, as drawn)."""
    if not params.do_sample:
        return sampling.token_logprob(scores, token, params.logprobs)
    return sampling.sampled_logprob(scores, params, token, params.logprobs)


def is_own_format(path: Path) -> bool:
    """A directory written by CTranslate2's converter: model.bin, no transformers weights."""
    return (path / "model.bin").is_file() and not any(
        (path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")
    )


def load(model_dir: Path, *, threads: int, compute_type: str, tokenizer,
         max_rows: int = CTRANSLATE2.max_rows) -> CTranslate2Engine:
    try:
        return CTranslate2Engine(Path(model_dir), threads=threads, compute_type=compute_type,
                                 tokenizer=tokenizer, max_rows=max_rows)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc


def prepare(source_dir: Path, out_dir: Path, *, weight_format: str,
            progress: Callable[[str, float | None], None]) -> None:
    """Convert a transformers directory into `out_dir`; needs torch and transformers."""
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast

    class KoGPT2Converter(TransformersConverter):
        # AutoTokenizer would add <|endoftext|> as a 51,201st token, which the model lacks.
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return PreTrainedTokenizerFast.from_pretrained(
                model_name_or_path, **SPECIAL_TOKENS_MAP, **kwargs
            )

    progress(f"converting to CTranslate2 {weight_format}", None)
    KoGPT2Converter(str(source_dir)).convert(
        str(out_dir), quantization=WEIGHT_FORMATS[weight_format], force=True
    )
