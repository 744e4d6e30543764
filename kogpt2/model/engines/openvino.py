"""The default CPU engine: KoGPT2 as a stateful OpenVINO model, decoded by a small numpy loop
that runs every concurrent request's rows in shared steps (continuous batching).

The model keeps its attention cache inside OpenVINO (a "stateful" model), so one step sends a
token per row in and gets a row of logits out for each. Choosing the next token stays here, in
numpy, in transformers' order, so every knob means what it means on the reference engine, row
by row. OpenVINO GenAI's C++ loop runs this same model as fast at batch 1 (docs/engines.md),
and its ContinuousBatchingPipeline batches too, but 2026.4 refuses its per-token streamer (what
checks the deadline and a cancel) when num_return_sequences > 1, and it would add
openvino-genai and openvino-tokenizers to the image.

Serving needs `openvino` and numpy only: no torch, no transformers. `prepare` (the exporter)
imports torch, transformers and nncf inside itself.
"""

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import sampling
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

NAME = "openvino"
MODEL_XML = "openvino_model.xml"
MODEL_BIN = "openvino_model.bin"
WEIGHT_FORMATS = ("int8", "float32")
# How the CPU computes: compile properties, by compute type (measured on the full-size stand-in:
# docs/engines.md; bench/openvino_engine.py).
# - int8: int8 weights meet activations quantized to int8 on the fly (groups of 32), summed and
#   normalized in f32, the attention cache in u8 (the plugin's defaults at f32 precision, set
#   here so a new release can't change them). The default for int8 weights: 1.5x faster than
#   bf16 on this AMD EPYC, and as close to fp32 transformers.
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
INPUTS = {"input_ids", "attention_mask", "position_ids", "logits_from", "beam_idx"}
CONVERT_HINT = "python scripts/convert.py SRC OUT --engine openvino"
# The cache grows a slot per step for every row until the batch empties, and every step
# attends over all of it, masked slots included: on 2 cores 8 rows take 10.6 ms a step at 20
# slots, 15.4 at 128, 30.7 at 500. So a request joins a running batch only if it ends within
# this many slots, or before the batch's longest request ends anyway; else it waits for the
# batch to empty, and starts the next one.
CACHE_SLOTS = 128
# A longer title waits for the batch to empty and is read in one step, not a token a step.
JOIN_MAX_PROMPT = 64


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
    weight_format = (read_metadata(model_dir) or {}).get("weight_format", "unknown")
    if compute_type == "default":
        compute_type = "f32" if weight_format == "float32" else "int8"
    if compute_type == "int8" and weight_format == "float32":
        raise ModelLoadError(
            f"{str(model_dir)!r} has float32 weights: int8 compute needs an int8 export"
        )
    eos = eos_id(tokenizer)
    import openvino as ov

    try:
        # Compiled straight from the file: OpenVINO maps the weights instead of holding a
        # second copy in an ov.Model while it compiles.
        compiled = ov.Core().compile_model(model_dir / MODEL_XML, "CPU", {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            **PROPERTIES[compute_type],
        })
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc
    names = {name for port in compiled.inputs for name in port.get_names()}
    if names != INPUTS or "logits" not in compiled.output(0).get_names():
        raise ModelLoadError(
            f"{str(model_dir)!r} holds an OpenVINO model that this engine didn't export (inputs "
            f"{sorted(names)}): run `{CONVERT_HINT}`"
        )
    ran = compute_type
    if compute_type == "bf16":  # asked of a CPU without bf16, it runs f32: say what runs
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    return OpenVINOEngine(compiled, eos, f"{weight_format} weights, {ran} compute",
                          max_rows=max_rows)


class OpenVINOEngine:
    """Continuous batching: every running request's rows decode together, a token a row a step.

    A scheduler thread runs the model while there is work. A request that comes while others
    run joins at the next step: it reads its title one token per step beside their decoding
    (the cache slots before it are masked for it, its positions count from 0), then decodes
    with them; a finished row leaves at once. Each row keeps its own sampler (penalty over its
    own title and tokens, its own seeded stream), stop ids, deadline, cancel and listener, so
    what a row writes doesn't depend on what shares its steps. An empty batch starts afresh:
    the titles waiting then are read in one step, left-padded.
    """

    name = NAME
    features = OPENVINO.features

    def __init__(self, compiled, eos: int, compute_type: str, *,
                 max_rows: int = OPENVINO.max_rows):
        self.compute_type = compute_type
        self.eos_id = eos
        self.max_rows = max_rows
        self._request = compiled.create_infer_request()  # its state: every running row's cache
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._jobs: list[_Job] = []  # admitted, in admission order
        self._rows: list[_Row] = []  # the cache's rows, in order
        self._slots = 0  # the cache's length: a slot per row per step since the reset
        self._looping = False

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"rows_running": sum(job.request.rows for job in self._jobs),
                    "rows_waiting": sum(job.request.rows for job in self._waiting),
                    "max_rows": self.max_rows}

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        for request in requests:
            refuse_unless(self.name, self.features, request.params)
        jobs = [_Job(request, self.eos_id) for request in requests]
        with self._lock:
            self._waiting.extend(jobs)
            if not self._looping:
                self._looping = True
                threading.Thread(target=self._loop, name="openvino-batch", daemon=True).start()
        for job in jobs:
            job.done.wait()
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]

    # --- on the scheduler thread ---

    def _loop(self) -> None:
        while True:
            with self._lock:
                newcomers = self._admit()
                if not newcomers and not self._rows:
                    self._looping = False  # the next generate() starts another
                    return
            try:
                if self._rows:
                    self._decode(newcomers)
                else:
                    self._prefill(newcomers)
            except Exception as exc:  # fails what runs; what waits starts afresh
                with self._lock:
                    failed, self._jobs, self._rows = self._jobs, [], []
                for job in failed:
                    job.fail(exc)

    def _admit(self) -> list["_Job"]:
        """The waiting jobs that join now, in arrival order (the lock held). One that can't
        join yet holds those behind it: nobody is passed over for good."""
        for job in list(self._waiting):
            if job.abandoned():  # cancelled while waiting
                self._waiting.remove(job)
                job.finish()
        running = sum(job.request.rows for job in self._jobs)
        fresh = not self._rows
        # The slot where the running batch's last request ends at the latest.
        horizon = max((job.ends_by for job in self._jobs), default=0)
        newcomers: list[_Job] = []
        while self._waiting:
            request = self._waiting[0].request
            length = len(request.prompt_ids)
            if running + request.rows > self.max_rows and (running or newcomers):
                break
            ends_by = self._slots + length + request.max_new_tokens
            if not fresh and (length > JOIN_MAX_PROMPT or ends_by > max(CACHE_SLOTS, horizon)):
                break  # it waits for the batch to empty, then reads its title in one step
            job = self._waiting.popleft()
            job.ends_by = ends_by
            job.admitted()
            newcomers.append(job)
            running += request.rows
        if fresh and newcomers:  # each ends by its budget past the widest title
            width = max(len(job.request.prompt_ids) for job in newcomers)
            for job in newcomers:
                job.ends_by = width + job.request.max_new_tokens
        self._jobs.extend(newcomers)
        return newcomers

    def _prefill(self, jobs: list["_Job"]) -> None:
        """A fresh batch: every title in one step, left-padded (pads are masked)."""
        self._request.reset_state()
        width = max(len(job.request.prompt_ids) for job in jobs)
        input_ids = np.zeros((len(jobs), width), dtype=np.int64)
        positions = np.zeros_like(input_ids)
        mask = np.zeros_like(input_ids)
        rows = []
        for i, job in enumerate(jobs):
            prompt = job.request.prompt_ids
            pad = width - len(prompt)
            input_ids[i, pad:] = prompt
            positions[i, pad:] = np.arange(len(prompt))
            mask[i, pad:] = 1
            job.fed = len(prompt)
            rows.append(_Row(job, None, cache=i, joined_at=pad, position=len(prompt)))
        scoring = any(job.scores is not None for job in jobs)
        logits = self._infer(input_ids, mask, positions, np.arange(len(jobs), dtype=np.int32),
                             logits_from=0 if scoring else width - 1)
        self._rows, self._slots = rows, width
        for i, row in enumerate(rows):
            if row.job.scores is not None:  # position pad + k scores the title's token k + 1
                row.job.scores = sampling.prompt_logprobs(
                    logits[i, row.joined_at:], row.job.request.prompt_ids,
                    row.job.request.params.prompt_logprobs)
        self._advance(logits[:, -1])

    def _decode(self, newcomers: list["_Job"]) -> None:
        """One step: each row feeds one token, its title's next or its own last."""
        for job in newcomers:  # cache row 0 stands in: every slot of it is masked for them
            self._rows.append(_Row(job, None, cache=0, joined_at=self._slots, position=0))
        rows = self._rows
        input_ids = np.array([[row.feed()] for row in rows], dtype=np.int64)
        positions = np.array([[row.position - 1] for row in rows], dtype=np.int64)
        joined = np.array([row.joined_at for row in rows])
        mask = (np.arange(self._slots + 1)[None, :] >= joined[:, None]).astype(np.int64)
        beam = np.array([row.cache for row in rows], dtype=np.int32)
        logits = self._infer(input_ids, mask, positions, beam)
        self._slots += 1
        for i, row in enumerate(rows):
            job = row.job
            if row.reading and job.scores is not None and job.fed < len(job.request.prompt_ids):
                job.score(logits[i, -1])
        self._advance(logits[:, -1])

    def _advance(self, logits: np.ndarray) -> None:
        """After a step: titles read in full fan out to their sequences, sequences choose their
        next token, and finished jobs leave with their rows. `logits` (a row each) may be the
        infer request's buffer: each row is copied as it is chosen from."""
        kept: list[_Row] = []
        for i, row in enumerate(self._rows):
            row.cache = i
            job = row.job
            if not row.reading:
                row.token = job.choose(row.choice, logits[i].copy())
                kept.append(row)
            elif job.fed < len(job.request.prompt_ids):
                kept.append(row)
            elif job.request.max_new_tokens > 0:
                for choice in range(job.request.rows):  # they all continue this cache row
                    token = job.choose(choice, logits[i].copy())
                    kept.append(_Row(job, choice, cache=i, joined_at=row.joined_at,
                                     position=row.position, token=token))
        for job in self._jobs:
            try:
                if job.stepped():
                    job.finish()
            except Exception as exc:  # a listener's failure fails its own job only
                job.fail(exc)
        with self._lock:
            self._jobs = [job for job in self._jobs if not job.done.is_set()]
        self._rows = [row for row in kept if row.going]

    def _infer(self, input_ids, mask, positions, beam, logits_from: int = 0) -> np.ndarray:
        """One model call; the logits of positions logits_from.., in the request's buffer (the
        next call reuses it: copy what is kept)."""
        self._request.infer(
            {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions,
             "logits_from": np.array([logits_from], dtype=np.int64), "beam_idx": beam},
            share_inputs=True,
        )
        return self._request.get_tensor("logits").data


class _Job:
    """One request in the batch: its rows' samplers, tokens and log-probabilities, its title's
    scores, and how it ended."""

    def __init__(self, request: EngineRequest, eos: int):
        params = request.params
        self.request, self.eos = request, eos
        self.arrived = time.monotonic()
        self.queued_ms = 0
        self.fed = 0  # title tokens read
        self.ends_by = 0  # the cache slot it ends by at the latest, once admitted
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

    def score(self, logits: np.ndarray) -> None:
        """After title token k was read: the log-probability of token k + 1."""
        token = self.request.prompt_ids[self.fed]
        logprobs = sampling.log_softmax(np.asarray(logits, dtype=np.float32))
        top = sampling.best(logprobs, self.request.params.prompt_logprobs)
        self.scores.append(TokenLogprob(token, float(logprobs[token]), top))

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
    """A row of the cache: a job's title being read (`choice` None), or one of its sequences.
    `cache`: the row of the last step's cache it continues; `joined_at`: the slot of its first
    token (those before are masked for it); `position`: how many tokens it has fed; `token`:
    its last choice."""

    job: _Job
    choice: int | None
    cache: int
    joined_at: int
    position: int
    token: int = -1

    @property
    def reading(self) -> bool:
        return self.choice is None

    @property
    def going(self) -> bool:
        if self.job.done.is_set():
            return False
        return self.reading or not self.job.ended[self.choice]

    def feed(self) -> int:
        """The token this row feeds now."""
        if self.reading:
            token = self.job.request.prompt_ids[self.job.fed]
            self.job.fed += 1
        else:
            token = self.token
        self.position += 1
        return token


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
    slots and the new tokens), position_ids, logits_from and beam_idx in, the logits of the
    positions from logits_from on out, the attention cache kept in OpenVINO variables."""
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

        def forward(self, input_ids, attention_mask, position_ids, logits_from, *past):
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
            # The logits of positions logits_from.. only: every position's when a title is
            # scored (prompt logprobs), else the last (16 titles of 12 tokens would be 39 MB).
            keep = torch.arange(logits_from.reshape(()), new)
            return (self.gpt2.lm_head(body.ln_f(torch.index_select(x, 1, keep))), *present)

    cache = [f"{kind}.{i}" for i in range(layers) for kind in ("key", "value")]
    example = (
        torch.tensor([[1, 2, 3]]),
        torch.ones(1, 5, dtype=torch.long),
        torch.tensor([[2, 3, 4]]),
        torch.tensor([1]),
        *[torch.zeros(1, heads, 2, head) for _ in cache],
    )
    inputs = [
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([1]), ov.Type.i64),
        *[(ov.PartialShape([-1, heads, -1, head]), ov.Type.f32) for _ in cache],
    ]
    with torch.no_grad():
        ov_model = ov.convert_model(Decoder().eval(), example_input=example, input=inputs)
    names = ["input_ids", "attention_mask", "position_ids", "logits_from"] + cache
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
