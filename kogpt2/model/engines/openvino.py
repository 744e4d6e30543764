"""The default CPU engine: KoGPT2 as an OpenVINO model with a paged attention cache, decoded by
a small numpy loop that runs every concurrent request's sequences in shared steps (continuous
batching).

Each step sends OpenVINO the new tokens of every running sequence, one flat list (a sequence
feeds its title, or a part of it, or its last token), and gets back the logits of the positions
asked for. The attention cache lives in blocks of 32 tokens that the loop hands out to
sequences (PagedAttention, as vLLM and OpenVINO GenAI keep it), so no sequence is padded to
another's length and none reads another's slots. Choosing the next token stays here, in numpy,
in transformers' order, so every knob means what it means on the reference engine, row by row.

A sequence's logits are bit for bit the same whatever shares its steps (other titles, other
lengths, joins and leaves): int8 activations are quantized per token, each sequence's
attention runs on its own blocks, and the few things the CPU plugin would otherwise do
differently by company are fixed here (the fillers of _forward, and BLOCK).

Serving needs `openvino` and numpy only: no torch, no transformers. `prepare` (the exporter)
imports torch, transformers and nncf inside itself.
"""

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import sampling
from ..params import MAX_RETURN_SEQUENCES
from ..sampling import RowSampler
from ..seam import (
    EngineRequest,
    EngineResult,
    ModelLoadError,
    TokenLogprob,
    finish,
    refuse_unless,
    short_reason,
    waited_ms,
)
from ..vocab import eos_id, read_metadata
from . import OPENVINO

log = logging.getLogger(__name__)

NAME = "openvino"
MODEL_XML = "openvino_model.xml"
MODEL_BIN = "openvino_model.bin"
WEIGHT_FORMATS = ("int8", "float32")
# How the CPU computes: compile properties, by compute type (measured on the full-size stand-in:
# docs/engines.md; bench/openvino_engine.py).
# - int8: int8 weights meet activations quantized to int8 on the fly, per token in groups of
#   32, summed and normalized in f32, the attention cache in u8 (the plugin's defaults at f32
#   precision, set here so a new release can't change them). The default for int8 weights.
#   Per-token scales make a row's numbers independent of the other rows of a step.
# - bf16: the plugin's defaults where the CPU has bf16 (else it runs f32).
# - f32: f32 throughout, the cache too: with float32 weights it gives transformers' greedy
#   tokens exactly (the u8 cache alone changed them after ~40). The default for float32.
PROPERTIES = {
    "int8": {
        "INFERENCE_PRECISION_HINT": "f32",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32,
        "KV_CACHE_PRECISION": "u8",
    },
    "bf16": {"INFERENCE_PRECISION_HINT": "bf16"},
    "f32": {
        "INFERENCE_PRECISION_HINT": "f32",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        "KV_CACHE_PRECISION": "f32",
    },
}
ALIASES = {"float32": "f32", "bfloat16": "bf16"}
# The exported model's inputs (prepare), before load() turns its cache into paged attention.
INPUTS = {"input_ids", "attention_mask", "position_ids", "logits_at", "beam_idx"}
CONVERT_HINT = "python scripts/convert.py SRC OUT --engine openvino"
# Tokens a step feeds at most (titles are read in parts beyond it), so a long title never
# holds the decoding rows for its whole length: a 256-token part takes ~0.3 s on 2 cores. Also
# the most positions a step returns logits for when titles are scored (256 x 51,200 floats:
# 52 MB), however many titles a batch scores.
STEP_TOKENS = 256
# Tokens per cache block: the CPU plugin's (checked at load). A title read in parts breaks at
# block ends: each part's queries then meet the cache in the same blocks as when the title is
# read in one step, and give the same numbers.
BLOCK = 32
# How often a caller waiting for its job checks that the scheduler still runs.
WATCHDOG_S = 5.0
# How long a failed scheduler keeps the model `failed` (GET /ready: 503) with no step since.
FAILED_FOR_S = 30.0


def is_own_format(path: Path) -> bool:
    """A directory written by `prepare`: the OpenVINO model and no transformers weights."""
    path = Path(path)
    return (path / MODEL_XML).is_file() and (path / MODEL_BIN).is_file()


def load(model_dir: Path, *, threads: int, compute_type: str, tokenizer,
         max_rows: int = OPENVINO.max_rows) -> "OpenVINOEngine":
    model_dir = Path(model_dir)
    compute_type = ALIASES.get(compute_type, compute_type)
    if compute_type != "default" and compute_type not in PROPERTIES:
        raise ModelLoadError(
            f"the openvino engine computes in {', '.join(PROPERTIES)} or default, "
            f"not {compute_type!r}"
        )
    if not is_own_format(model_dir):
        raise ModelLoadError(
            f"{str(model_dir)!r} is not an OpenVINO model directory (no {MODEL_XML} + "
            f"{MODEL_BIN}): run `{CONVERT_HINT}`"
        )
    metadata = read_metadata(model_dir) or {}
    weight_format = metadata.get("weight_format", "unknown")
    if compute_type == "default":
        compute_type = "f32" if weight_format == "float32" else "int8"
    if compute_type == "int8" and weight_format == "float32":
        raise ModelLoadError(
            f"{str(model_dir)!r} has float32 weights: int8 compute needs an int8 export"
        )
    eos = eos_id(tokenizer)
    import openvino as ov
    from openvino._offline_transformations import paged_attention_transformation

    core = ov.Core()
    try:
        # read_model maps the weights file; compiling shares it rather than copying it.
        model = core.read_model(model_dir / MODEL_XML)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc
    names = {name for port in model.inputs for name in port.get_names()}
    if names != INPUTS or "logits" not in model.output(0).get_names():
        raise ModelLoadError(
            f"{str(model_dir)!r} holds an OpenVINO model that this engine didn't export (inputs "
            f"{sorted(names)}): run `{CONVERT_HINT}`"
        )
    try:
        # The stateful cache becomes paged attention here, not in the saved file: the CPU
        # plugin needs runtime information that the transformation gives and saving drops.
        paged_attention_transformation(model)
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            **PROPERTIES[compute_type],
        })
    except Exception as exc:
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc
    del model
    ran = compute_type
    if compute_type == "bf16":  # asked of a CPU without bf16, it runs f32: say what runs
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    return OpenVINOEngine(compiled, eos, f"{weight_format} weights, {ran} compute",
                          max_rows=max_rows, threads=threads,
                          max_positions=int(metadata.get("max_positions") or 1024))


class OpenVINOEngine:
    """Continuous batching: every running request's sequences step together.

    A scheduler thread runs the model while there is work. A request that comes while others
    run joins at the next step: its title is read (in parts of at most STEP_TOKENS) beside
    their decoding, then it fans out to its sequences (they share the title's cache blocks),
    which decode with the rest; a finished sequence leaves at once and frees its blocks. Each
    row keeps its own sampler (penalty over its own title and tokens, its own seeded stream),
    stop ids, deadline, cancel and listener, and its logits don't depend on what shares its
    steps: what a row writes is what it writes alone.

    If anything fails the scheduler (a model call, the loop's own code), every job running or
    waiting fails with it, the next request starts a fresh scheduler, and `failure` says what
    happened until a step succeeds again or FAILED_FOR_S pass.
    """

    name = NAME
    features = OPENVINO.features

    def __init__(self, compiled, eos: int, compute_type: str, *,
                 max_rows: int = OPENVINO.max_rows, threads: int = 1,
                 max_positions: int = 1024):
        self.compute_type = compute_type
        self.eos_id = eos
        self.max_rows = max_rows
        self._request = compiled.create_infer_request()
        # Blocks enough for every row at full length (a request with more rows than the cap
        # runs alone): the pool is allocated once, but only the blocks written to take memory
        # (freed blocks are reused first).
        blocks_per_row = -(-max_positions // _block_size(compiled))
        rows = max(max_rows, MAX_RETURN_SEQUENCES)
        self._min_sequences = max(1, threads)  # see the fillers (_forward)
        self._cache = _Cache(compiled, self._request,
                             rows * blocks_per_row + self._min_sequences)
        self._fillers = [self._cache.sequence() for _ in range(self._min_sequences)]
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._jobs: list[_Job] = []  # admitted, in admission order
        self._rows: list[_Row] = []  # what the next step feeds
        self._looping = False
        self._thread: threading.Thread | None = None
        self._failure: str | None = None
        self._failed_at = 0.0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"rows_running": sum(job.request.rows for job in self._jobs),
                    "rows_waiting": sum(job.request.rows for job in self._waiting),
                    "max_rows": self.max_rows}

    @property
    def failure(self) -> str | None:
        """None while the engine serves; else why its scheduler failed (for the operator's
        log: it may hold library messages), read by seam.engine_failure. It stays until a
        later step succeeds, or for FAILED_FOR_S: a router that sends nothing to a worker
        that isn't ready would otherwise never let a request start a fresh scheduler."""
        failure = self._failure
        if failure is not None and time.monotonic() - self._failed_at < FAILED_FOR_S:
            return failure
        return None

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        for request in requests:
            refuse_unless(self.name, self.features, request.params)
        jobs = [_Job(request, self.eos_id) for request in requests]
        with self._lock:
            self._waiting.extend(jobs)
            if not self._looping:
                thread = threading.Thread(target=self._loop, name="openvino-batch",
                                          daemon=True)
                try:
                    thread.start()
                except BaseException as exc:  # no thread, nothing would ever run them
                    self._fail_waiting(exc)
                    raise
                self._looping, self._thread = True, thread
        for job in jobs:
            while not job.done.wait(WATCHDOG_S):
                self._check_scheduler()
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]

    def _check_scheduler(self) -> None:
        """A caller still waits: if the scheduler thread is gone without a word (nothing in
        it should let that happen), fail what it left behind so the next request starts a
        new one."""
        with self._lock:
            if self._looping and not (self._thread and self._thread.is_alive()):
                self._fail_waiting(RuntimeError("the openvino scheduler stopped"))
                self._looping = False

    def _fail_waiting(self, exc: BaseException) -> None:
        """Fail every job waiting or running (the lock held) and say so in `failure`."""
        self._failure = short_reason(exc) or type(exc).__name__
        self._failed_at = time.monotonic()
        failed = [*self._jobs, *self._waiting]
        self._jobs, self._rows = [], []
        self._waiting.clear()
        self._cache.clear()
        self._fillers = [self._cache.sequence() for _ in self._fillers]
        for job in failed:
            job.fail(exc)

    # --- on the scheduler thread ---

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    self._admit()
                    if not self._rows:
                        self._looping = False  # the next generate() starts another
                        return
                self._step()
                self._failure = None
        except BaseException as exc:  # whatever it was, nobody waits on a dead loop
            log.error("the openvino scheduler failed: %s", short_reason(exc))
            with self._lock:
                self._fail_waiting(exc)
                self._looping = False

    def _admit(self) -> None:
        """Waiting jobs join, in arrival order, while their rows fit (the lock held). One that
        doesn't fit yet holds those behind it: nobody is passed over for good."""
        now = time.monotonic()
        for job in list(self._waiting):
            if job.abandoned() or job.expired(now):  # no title read for nobody
                self._waiting.remove(job)
                job.finish()
        running = sum(job.request.rows for job in self._jobs)
        while self._waiting:
            job = self._waiting[0]
            if running + job.request.rows > self.max_rows and running:
                break
            self._waiting.popleft()
            job.admitted()
            self._jobs.append(job)
            self._rows.append(_Row(job, None, self._cache.sequence()))
            running += job.request.rows

    def _step(self) -> None:
        """One model call: every decoding row feeds its last token; titles being read feed
        their next part, as far as STEP_TOKENS allow. Then rows choose, titles read in full
        fan out to their sequences, and finished jobs leave."""
        plan: list[tuple[_Row, list[int], list[int]]] = []
        budget = max(STEP_TOKENS, len(self._rows) + BLOCK)
        logit_rows = STEP_TOKENS
        for row in self._rows:
            if not row.reading:
                plan.append((row, [row.token], [0]))
                budget -= 1
        for row in self._rows:
            if row.reading:
                part, wanted = row.next_part(budget, logit_rows)
                if part:
                    plan.append((row, part, wanted))
                    budget -= len(part)
                    logit_rows -= len(wanted) if row.job.scores is not None else 0
        logits = self._forward([(row.sequence, part, wanted) for row, part, wanted in plan])
        at = 0
        kept: list[_Row] = []
        stepped = {id(row) for row, _, _ in plan}
        for row, part, wanted in plan:
            got = logits[at:at + len(wanted)]
            at += len(wanted)
            job = row.job
            if not row.reading:
                row.token = job.choose(row.choice, got[0].copy())
                kept.append(row)
                continue
            start = job.fed
            job.fed += len(part)
            if job.scores is not None:
                job.score(got, start)
            if job.fed < len(job.request.prompt_ids):
                kept.append(row)
            elif job.request.max_new_tokens > 0:  # the title is read: its sequences begin
                kept += self._fan_out(row, got[-1])
            else:
                self._cache.release(row.sequence)
        kept += [row for row in self._rows if id(row) not in stepped]
        for job in self._jobs:
            try:
                if job.stepped():
                    job.finish()
            except Exception as exc:  # a listener's failure fails its own job only
                job.fail(exc)
        with self._lock:
            self._jobs = [job for job in self._jobs if not job.done.is_set()]
        order = {id(job): i for i, job in enumerate(self._jobs)}
        self._rows = []
        for row in kept:
            if row.going:
                self._rows.append(row)
            else:
                self._cache.release(row.sequence)
        self._rows.sort(key=lambda row: (order.get(id(row.job), -1), row.choice or 0))

    def _fan_out(self, title: "_Row", logits: np.ndarray) -> list["_Row"]:
        """A title read in full: its job's sequences, the first continuing the title's cache,
        the others sharing its full blocks (and each a copy of its last, partial one)."""
        job = title.job
        rows = [_Row(job, 0, title.sequence)]
        rows += [_Row(job, choice, self._cache.fork(title.sequence))
                 for choice in range(1, job.request.rows)]
        for row in rows:
            row.token = job.choose(row.choice, logits.copy())
        return rows

    def _forward(self, plan: list[tuple["_Sequence", list[int], list[int]]]) -> np.ndarray:
        """One model call. Each (sequence, tokens, wanted): the tokens it feeds next, and
        which of them (indices into `tokens`) to return the logits after. The logits come in
        plan order, in the request's buffer (the next call reuses it: copy what is kept)."""
        # The CPU plugin's PagedAttention runs a sequence's attention split across threads
        # (and adds the parts) when a step holds fewer sequences than threads, and whole on
        # one thread otherwise: the sums' order, so the logits, would depend on how many
        # sequences share the step. Fewer are filled up with sequences of their own, a token
        # at position 0 again and again, never read (at batch 1 on 2 threads: no cost seen).
        fillers = self._fillers[:max(0, self._min_sequences - len(plan))]
        for filler in fillers:
            filler.length = 0
        plan = [*plan, *[(filler, [0], []) for filler in fillers]]
        ids, positions, past, begins, blocks, block_begins, logits_at = [], [], [], [0], [], [0], []
        for sequence, tokens, wanted in plan:
            self._cache.grow(sequence, sequence.length + len(tokens))
            logits_at += [begins[-1] + i for i in wanted]
            ids += tokens
            positions += range(sequence.length, sequence.length + len(tokens))
            past.append(sequence.length)
            begins.append(len(ids))
            blocks += sequence.blocks
            block_begins.append(len(blocks))
        logits = self._infer({
            "input_ids": np.array(ids, dtype=np.int64),
            "position_ids": np.array(positions, dtype=np.int64),
            "logits_at": np.array(logits_at, dtype=np.int64),
            "past_lens": np.array(past, dtype=np.int32),
            "subsequence_begins": np.array(begins, dtype=np.int32),
            "block_indices": np.array(blocks, dtype=np.int32),
            "block_indices_begins": np.array(block_begins, dtype=np.int32),
            "max_context_len": np.array(max(p + len(t) for p, (_, t, _) in
                                            zip(past, plan, strict=True)), dtype=np.int32),
        })
        for sequence, tokens, _ in plan:
            sequence.length += len(tokens)
        return logits

    def _infer(self, inputs: dict) -> np.ndarray:
        """One model call: the logits of the positions asked for, [positions, vocabulary]."""
        self._request.infer(inputs, share_inputs=True)
        logits = self._request.get_tensor("logits").data
        return logits.reshape(-1, logits.shape[-1])



def _block_size(compiled) -> int:
    """Tokens per cache block: the value cache's third dimension (the CPU plugin's is 32)."""
    shape = compiled.input("value_cache.0").get_partial_shape()
    return shape[2].get_length()



@dataclass(eq=False)
class _Sequence:
    """A sequence in the cache: its blocks, in order, and how many tokens they hold."""

    blocks: list[int] = field(default_factory=list)
    length: int = 0


class _Cache:
    """The paged attention cache: per layer, a key and a value tensor of `blocks` blocks,
    handed out to sequences. A block shared by several sequences (the full blocks of a title
    that fans out) is freed when the last of them is."""

    def __init__(self, compiled, request, blocks: int):
        import openvino as ov

        if _block_size(compiled) != BLOCK:
            raise ModelLoadError(f"the CPU plugin's cache blocks hold {_block_size(compiled)} "
                                 f"tokens, not {BLOCK}")
        self.tensors = []
        for port in compiled.inputs:
            name = port.get_any_name()
            if name.startswith(("key_cache.", "value_cache.")):
                shape = [blocks, *(dim.get_length() for dim in port.get_partial_shape()[1:])]
                tensor = ov.Tensor(port.get_element_type(), shape)
                request.set_tensor(name, tensor)
                self.tensors.append(tensor.data)
        self.size = blocks
        self.refs = [0] * blocks
        self.free = list(range(blocks - 1, -1, -1))  # a stack: recently freed blocks first

    def sequence(self) -> _Sequence:
        return _Sequence()

    def grow(self, sequence: _Sequence, length: int) -> None:
        """Give `sequence` the blocks that `length` tokens need."""
        while len(sequence.blocks) * BLOCK < length:
            if not self.free:
                raise RuntimeError(f"the attention cache is full ({self.size} blocks)")
            block = self.free.pop()
            self.refs[block] = 1
            sequence.blocks.append(block)

    def fork(self, sequence: _Sequence) -> _Sequence:
        """A second sequence that continues `sequence`: the same full blocks, and a copy of
        its last block if that one isn't full (each sequence writes its own)."""
        full = sequence.length // BLOCK
        copy = _Sequence(list(sequence.blocks[:full]), sequence.length)
        for block in copy.blocks:
            self.refs[block] += 1
        if full < len(sequence.blocks):
            self.grow(copy, sequence.length)
            source, target = sequence.blocks[full], copy.blocks[full]
            for tensor in self.tensors:
                tensor[target] = tensor[source]
        return copy

    def release(self, sequence: _Sequence) -> None:
        for block in sequence.blocks:
            self.refs[block] -= 1
            if self.refs[block] == 0:
                self.free.append(block)
        sequence.blocks, sequence.length = [], 0

    def clear(self) -> None:
        """After a failure: every block free (the sequences that held them are gone)."""
        self.refs = [0] * self.size
        self.free = list(range(self.size - 1, -1, -1))


class _Job:
    """One request in the batch: its rows' samplers, tokens and log-probabilities, its title's
    scores, and how it ended."""

    def __init__(self, request: EngineRequest, eos: int):
        params = request.params
        self.request, self.eos = request, eos
        self.arrived = time.monotonic()
        self.queued_ms = 0
        self.fed = 0  # title tokens read
        self.samplers = [RowSampler(params, request.prompt_ids, eos_id=eos, seed=request.seed,
                                    choice=choice, logprobs_mode=request.logprobs_mode)
                         for choice in range(request.rows)]
        self.new: list[list[int]] = [[] for _ in range(request.rows)]
        self.logprobs = ([[] for _ in range(request.rows)] if params.logprobs is not None
                         else None)
        self.ended = [False] * request.rows
        self.scores: list[TokenLogprob | None] | None = (
            [None] if params.prompt_logprobs is not None else None)
        self._first: tuple[int, TokenLogprob | None] | None = None  # row 0's choice this step
        self.done = threading.Event()
        self.result: EngineResult | None = None
        self.error: BaseException | None = None

    def admitted(self) -> None:
        self.queued_ms = waited_ms(self.arrived, time.monotonic())

    def abandoned(self) -> bool:
        """Cancelled (the caller went away): a job stops reading its title, or waiting. A
        deadline, as on every engine, stops it after its first token: it was read for that."""
        watch = self.request.watch
        if self.scores is None and watch.cancel is not None and watch.cancel.is_set():
            watch.cancelled = True
        return watch.cancelled

    def expired(self, now: float) -> bool:
        """Its deadline passed while it waited for a place: its title isn't read at all. A job
        that scores its title is read whatever the time: its scores are its whole answer."""
        watch = self.request.watch
        if self.scores is None and watch.deadline is not None and now >= watch.deadline:
            watch.deadline_hit = True
        return watch.deadline_hit

    def score(self, logits: np.ndarray, start: int) -> None:
        """After title tokens start.. were read (`logits`: after each of them): the
        log-probabilities of the title tokens that follow them."""
        prompt = self.request.prompt_ids
        following = prompt[start:start + len(logits) + 1]
        self.scores += sampling.prompt_logprobs(logits, following,
                                                self.request.params.prompt_logprobs)[1:]

    def choose(self, choice: int, logits: np.ndarray) -> int:
        token, logprob = self.samplers[choice].choose(logits)
        self.new[choice].append(token)
        if self.logprobs is not None:
            self.logprobs[choice].append(logprob)
        self.ended[choice] = self.samplers[choice].ends(token)
        if choice == 0:
            self._first = (token, logprob)
        return token

    def stepped(self) -> bool:
        """After a step: tell the watch, and say whether this job is over."""
        request = self.request
        if self.fed < len(request.prompt_ids) or request.max_new_tokens == 0:
            # Reading its title: a scoring job reads it whole (its scores are its answer).
            if request.max_new_tokens == 0 and self.fed == len(request.prompt_ids):
                return True
            return self.abandoned()
        first, self._first = self._first, None
        stop = request.watch.step(*first) if first else request.watch.step()
        written = max(len(ids) for ids in self.new)
        return stop or all(self.ended) or written >= request.max_new_tokens

    def finish(self) -> None:
        request = self.request
        outputs = [
            finish(ids, sampler.end_ids, request.max_new_tokens, request.watch,
                   self.logprobs[choice] if self.logprobs is not None else None, self.eos)
            for choice, (ids, sampler) in enumerate(zip(self.new, self.samplers, strict=True))
        ]
        self.result = EngineResult(outputs, self.scores, self.queued_ms)
        self.done.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()


@dataclass(eq=False)
class _Row:
    """What a step feeds for a job: its title being read (`choice` None), or one of its
    sequences (`token`: its last choice), in `sequence` of the cache."""

    job: _Job
    choice: int | None
    sequence: _Sequence
    token: int = -1

    @property
    def reading(self) -> bool:
        return self.choice is None

    @property
    def going(self) -> bool:
        if self.job.done.is_set():
            return False
        return self.reading or not self.job.ended[self.choice]

    def next_part(self, budget: int, logit_rows: int) -> tuple[list[int], list[int]]:
        """The title's next part, within `budget` tokens (and `logit_rows` positions when the
        title is scored, as every position's logits are), and which of its positions' logits
        the step returns: every one when scored, else the title's last. A part that stops
        short of the title's end stops at a block's end, so the next part starts a block."""
        prompt, fed = self.job.request.prompt_ids, self.job.fed
        scored = self.job.scores is not None
        room = min(budget, logit_rows) if scored else budget
        end = len(prompt)
        if end - fed > room:
            end = (fed + room) // BLOCK * BLOCK
        part = prompt[fed:end]
        if not part:
            return [], []
        wanted = list(range(len(part))) if scored else (
            [len(part) - 1] if end == len(prompt) else [])
        return part, wanted


# --- export: transformers directory -> OpenVINO directory (needs torch, transformers, nncf) ---

def prepare(source_dir: Path, out_dir: Path, *, weight_format: str,
            progress: Callable[[str, float | None], None]) -> None:
    """Export the transformers model in `source_dir` into the empty directory `out_dir`:
    openvino_model.xml/.bin, a stateful model with int8 or float32 weights. The caller adds
    the tokenizer and the metadata (prepare.write_entry). Needs torch and transformers."""
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight format {weight_format!r}: choose from {WEIGHT_FORMATS}")
    # Fractions of the whole, from the full-size model's export on 2 cores (int8 ~15 s).
    progress("loading the transformers model", 0.0)  # importing torch alone takes seconds
    import openvino as ov
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(Path(source_dir), dtype=torch.float32).eval()
    check_config(model.config)
    progress("converting to OpenVINO", 0.2 if weight_format == "int8" else 0.3)
    ov_model = convert(model)
    del model
    if weight_format == "int8":
        progress("compressing weights to int8", 0.65)
        ov_model = compress_int8(ov_model)
    progress("writing the OpenVINO model", 0.95)
    # compress_to_fp16 would store the float32 export's weights (and int8's scales) in fp16.
    ov.save_model(ov_model, Path(out_dir) / MODEL_XML, compress_to_fp16=False)


def compress_int8(ov_model):
    """Asymmetric per-channel int8 of every weight, the embeddings and output head included
    (what optimum-intel's --weight-format int8 writes)."""
    import contextlib
    import io
    import logging

    import nncf

    # nncf prints a statistics table (its logger) and a progress bar (rich, on stdout): noise
    # in a server's log, where `progress` already tells the stage. The redirect is process-wide
    # for these few seconds; the service logs through logging handlers, which it doesn't touch.
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def check_config(config) -> None:
    """The export re-states GPT-2's attention (below); refuse variants it doesn't re-state."""
    unsupported = {
        "model_type": (config.model_type, "gpt2"),
        "scale_attn_weights": (config.scale_attn_weights, True),
        "scale_attn_by_inverse_layer_idx": (config.scale_attn_by_inverse_layer_idx, False),
        "reorder_and_upcast_attn": (config.reorder_and_upcast_attn, False),
        "add_cross_attention": (config.add_cross_attention, False),
    }
    wrong = [f"{key}={got!r}" for key, (got, want) in unsupported.items() if got != want]
    if wrong:
        raise ValueError(f"the openvino export supports plain GPT-2 only, not {', '.join(wrong)}")


def convert(model):
    """GPT2LMHeadModel -> stateful OpenVINO model: input_ids, attention_mask (over the cache's
    slots and the new tokens), position_ids, logits_at and beam_idx in, the logits of the
    positions logits_at names (flat indices into input_ids) out, the attention cache kept in
    OpenVINO variables. load() turns that cache into paged attention (the form the CPU
    plugin's PagedAttention kernel runs: one flat list of every sequence's new tokens)."""
    import openvino as ov
    import torch

    config = model.config
    heads, width, layers = config.n_head, config.n_embd, config.n_layer
    head = width // heads

    class Decoder(torch.nn.Module):
        """GPT-2's forward written for tracing: transformers' own modules (layer norms, the
        projections, the MLP with its activation), and the attention restated with the cache
        as plain tensors (transformers' Cache objects and mask helpers don't trace)."""

        def __init__(self):
            super().__init__()
            self.gpt2 = model

        def forward(self, input_ids, attention_mask, position_ids, logits_at, *past):
            body = self.gpt2.transformer
            batch, new = input_ids.shape
            seen = attention_mask.shape[1]  # cache slots + new tokens
            x = body.wte(input_ids) + body.wpe(position_ids)  # each row counts its own
            # Causal over the cache's slots + the new tokens (bottom-right aligned), within each
            # row's own slots (attention_mask: rows join a batch late, titles are left-padded).
            # A slot always sees itself, so a pad's row stays finite (no softmax over nothing).
            slots = torch.arange(seen)[None, :]
            here = (torch.arange(new) + (seen - new))[:, None]
            mask = ((slots <= here)[None, None] & attention_mask.bool()[:, None, None, :]) | (
                slots == here)[None, None]
            present = []
            for i, block in enumerate(body.h):
                q, k, v = block.attn.c_attn(block.ln_1(x)).split(width, dim=2)
                q, k, v = (t.reshape(batch, new, heads, head).transpose(1, 2) for t in (q, k, v))
                k = torch.cat([past[2 * i], k], dim=2)
                v = torch.cat([past[2 * i + 1], v], dim=2)
                present += [k, v]
                # Scale 1/sqrt(head) as GPT-2's scale_attn_weights; the CPU plugin fuses this
                # with the cache into one attention kernel.
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                x = x + block.attn.c_proj(out.transpose(1, 2).reshape(batch, new, width))
                x = x + block.mlp(block.ln_2(x))
            # The logits of the positions asked for only (flat indices): a title's every
            # position when it is scored, else each sequence's last. 20 titles of 1,024 tokens
            # would be 4.2 GB of logits; the lm_head is most of a step's weights too.
            kept = torch.index_select(x.reshape(-1, width), 0, logits_at)
            return (self.gpt2.lm_head(body.ln_f(kept)), *present)

    cache = [f"{kind}.{i}" for i in range(layers) for kind in ("key", "value")]
    example = (
        torch.tensor([[1, 2, 3]]),
        torch.ones(1, 5, dtype=torch.long),
        torch.tensor([[2, 3, 4]]),
        torch.tensor([2]),
        *[torch.zeros(1, heads, 2, head) for _ in cache],
    )
    inputs = [
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1]), ov.Type.i64),
        *[(ov.PartialShape([-1, heads, -1, head]), ov.Type.f32) for _ in cache],
    ]
    with torch.no_grad():
        ov_model = ov.convert_model(Decoder().eval(), example_input=example, input=inputs)
    names = ["input_ids", "attention_mask", "position_ids", "logits_at"] + cache
    for port, name in zip(ov_model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, ["logits"] + [f"present.{n}" for n in cache],
                          strict=True):
        port.get_tensor().set_names({name})
    make_stateful(ov_model, cache)
    return ov_model


def make_stateful(ov_model, cache: list[str]) -> None:
    """Move the cache inputs/outputs into OpenVINO variables, the way the CPU plugin's fused
    attention-with-cache kernel expects them: each past tensor read through a Gather on a new
    `beam_idx` input (which cache row each batch row continues), and a zero-length initial value
    with the batch's size after reset_state()."""
    import openvino as ov
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    ov_model.add_parameters([beam_idx])
    for name in cache:
        port = ov_model.input(name)
        consumers = port.get_target_inputs()
        reordered = ops.gather(port, beam_idx, ops.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(reordered.output(0))
    ov_model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(ov_model, {name: f"present.{name}" for name in cache})
    batch = ops.gather(
        ops.shape_of(ov_model.input("input_ids"), "i64"), ops.constant([0]), ops.constant(0)
    )
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            _, heads, _, head = op.get_output_partial_shape(0)
            rest = ops.constant(np.array([heads.get_length(), 0, head.get_length()], np.int64))
            shape = ops.concat([batch, rest], 0)
            op.set_arguments([ops.broadcast(ops.constant(0.0, ov.Type.f32), shape)])
    ov_model.validate_nodes_and_infer_types()
