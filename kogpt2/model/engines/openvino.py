"""The default CPU engine: KoGPT2 as a stateful OpenVINO model, decoded by a small numpy loop.

The model keeps its attention cache inside OpenVINO (a "stateful" model), so one step sends a
token id in and gets one row of logits out. Choosing the next token stays here, in numpy, in
transformers' order, so every knob means what it means on the reference engine. OpenVINO
GenAI's C++ loop runs this same model as fast (measured: README, "Engines"), but 2026.4 refuses
its per-token streamer, which is what checks the deadline and a cancel, when
num_return_sequences > 1, and it would add openvino-genai and openvino-tokenizers to the image.

Serving needs `openvino` and numpy only: no torch, no transformers. `prepare` (the exporter)
imports torch, transformers and nncf inside itself.
"""

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..params import MAX_RETURN_SEQUENCES
from ..sampling import RowSampler
from ..seam import (
    EngineRequest,
    EngineResult,
    ModelLoadError,
    Turns,
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
# README, "Engines"; bench/openvino_engine.py).
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
INPUTS = {"input_ids", "attention_mask", "beam_idx"}
CONVERT_HINT = "python scripts/convert.py SRC OUT --engine openvino"


def is_own_format(path: Path) -> bool:
    """A directory written by `prepare`: the OpenVINO model and no transformers weights."""
    path = Path(path)
    return (path / MODEL_XML).is_file() and (path / MODEL_BIN).is_file()


def load(model_dir: Path, *, threads: int, compute_type: str, tokenizer) -> "OpenVINOEngine":
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
    return OpenVINOEngine(compiled, eos, f"{weight_format} weights, {ran} compute")


class OpenVINOEngine:
    name = NAME
    features = OPENVINO.features
    # One request's rows decode together (num_return_sequences); requests take turns.
    max_rows = MAX_RETURN_SEQUENCES

    def __init__(self, compiled, eos: int, compute_type: str):
        self.compute_type = compute_type
        self.eos_id = eos
        # One infer request holds the attention cache of the generation that runs: one at a
        # time. Each row's random stream is its own, so a seed never depends on others.
        self._request = compiled.create_infer_request()
        self._turns = Turns(self.max_rows)

    def stats(self) -> dict[str, int]:
        return self._turns.stats()

    def _step(self, input_ids: np.ndarray, length: int, beam: np.ndarray) -> np.ndarray:
        """Feed one token per row (or the whole prompt); the rows' next-token logits, a copy.

        `length` counts the tokens each row has seen so far, these ones included (it sizes the
        attention mask, which is all ones: rows are never padded). `beam` picks, for each row,
        which row of the cache it continues: finished rows drop out, and the prompt's one row
        fans out to num_return_sequences rows.
        """
        rows = input_ids.shape[0]
        self._request.infer(
            {
                "input_ids": input_ids,
                "attention_mask": np.ones((rows, length), dtype=np.int64),
                "beam_idx": beam,
            },
            share_inputs=True,
        )
        return self._request.get_tensor("logits").data.copy()  # the next infer reuses it

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        for request in requests:
            refuse_unless(self.name, self.features, request.params)
        arrived = time.monotonic()
        results = []
        for request in requests:  # the export reads rows of one length: one prompt at a time
            with self._turns.turn(request.rows) as started:
                results.append(self._generate(request, waited_ms(arrived, started)))
        return results

    def _generate(self, request: EngineRequest, queued_ms: int) -> EngineResult:
        prompt_ids, max_new_tokens, watch = (request.prompt_ids, request.max_new_tokens,
                                             request.watch)
        rows = request.rows
        samplers = [RowSampler(request.params, prompt_ids, eos_id=self.eos_id,
                               seed=request.seed, choice=choice) for choice in range(rows)]
        new: list[list[int]] = [[] for _ in range(rows)]
        logprobs = [[] for _ in range(rows)] if request.params.logprobs is not None else None
        active = list(range(rows))  # the sequences still going, in logits' row order
        cache_rows = [0] * rows  # which row of the cache holds each active sequence
        self._request.reset_state()
        prompt = np.array([prompt_ids], dtype=np.int64)
        # The title is read once; its one cache row then fans out to every sequence.
        logits = self._step(prompt, len(prompt_ids), np.zeros(1, dtype=np.int32))
        logits = np.repeat(logits, rows, axis=0)
        for step in range(max_new_tokens):
            for row_logits, row in zip(logits, active, strict=True):
                token, logprob = samplers[row].choose(row_logits)
                new[row].append(token)
                if logprobs is not None:
                    logprobs[row].append(logprob)
            first = active[0] == 0
            stop = watch.step(new[0][-1] if first else None,
                              logprobs[0][-1] if first and logprobs is not None else None)
            going = [i for i, row in enumerate(active) if not samplers[row].ends(new[row][-1])]
            if stop or not going or step + 1 == max_new_tokens:
                break
            last = np.array([[new[active[i]][-1]] for i in going], dtype=np.int64)
            beam = np.array([cache_rows[i] for i in going], dtype=np.int32)
            logits = self._step(last, len(prompt_ids) + step + 1, beam)
            active = [active[i] for i in going]  # a finished sequence's row drops out
            cache_rows = list(range(len(active)))
        outputs = [
            finish(ids, samplers[row].end_ids, max_new_tokens, watch,
                   logprobs[row] if logprobs is not None else None, self.eos_id)
            for row, ids in enumerate(new)
        ]
        return EngineResult(outputs, None, queued_ms)


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
    """GPT2LMHeadModel -> stateful OpenVINO model: input_ids, attention_mask, beam_idx in,
    the last position's logits out, the attention cache kept in OpenVINO variables."""
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

        def forward(self, input_ids, attention_mask, *past):
            body = self.gpt2.transformer
            batch, new = input_ids.shape
            seen = attention_mask.shape[1]  # cached + new tokens
            positions = torch.arange(new) + (seen - new)
            x = body.wte(input_ids) + body.wpe(positions)
            # Causal over cache + new tokens (bottom-right aligned), and the padding mask.
            mask = (torch.arange(seen)[None, :] <= positions[:, None])[None, None]
            mask = mask & attention_mask.bool()[:, None, None, :]
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
            # Only the last position's logits: the prompt's other rows would be 51,200 wide each.
            return (self.gpt2.lm_head(body.ln_f(x[:, -1, :])), *present)

    cache = [f"{kind}.{i}" for i in range(layers) for kind in ("key", "value")]
    example = (
        torch.tensor([[1, 2, 3]]),
        torch.ones(1, 5, dtype=torch.long),
        *[torch.zeros(1, heads, 2, head) for _ in cache],
    )
    inputs = [
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        (ov.PartialShape([-1, -1]), ov.Type.i64),
        *[(ov.PartialShape([-1, heads, -1, head]), ov.Type.f32) for _ in cache],
    ]
    with torch.no_grad():
        ov_model = ov.convert_model(Decoder().eval(), example_input=example, input=inputs)
    for port, name in zip(ov_model.inputs, ["input_ids", "attention_mask"] + cache, strict=True):
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
