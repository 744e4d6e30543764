#!/usr/bin/env python3
"""Batch invariance on OpenVINO int8: candidate arrangements, each's speed alone and 8 at once,
whether a row's logits stay the same beside others, and how far from transformers float32.

    .venv/bin/python bench/batch_invariance.py                     # every candidate
    .venv/bin/python bench/batch_invariance.py --candidates paged-int8,stateful-int8

MODEL (--model, default models/kogpt2-stand-in, the full-size stand-in) is exported once per
weight format into --work with the engine's own exporter. Each candidate then runs in a fresh
process: a cache form (`stateful`: the one cache of every row the engine kept before issue
22, a fresh batch left-padded to its widest title; `paged`: the engine now, each sequence its
own blocks) and compile settings. It measures

- alone: ms per token of one greedy 86-token decode (median of 3);
- 8 at once: tokens/s of 8 rows decoding 64 tokens each, together (median of 3);
- the same as alone: the largest |difference| of any logit of 8 titles (after their title and
  each of 24 tokens fed to them), between each alone and all 8 together (stateful:
  read in one left-padded step; paged: one step, and again joining one by one);
- the distance: mean and largest |difference| of each next token's log-probability along the
  decoding path, from transformers float32's (5 titles + 40 of its greedy tokens).

Random weights make flat distributions: the distances say how much a candidate rounds, not how
well the real model would write (bench/quality.py is the gate for a default).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TITLES = ["근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "가을",
          "인공지능이 바꾸는 미래의 직업", "첫 출근 날", "겨울 산행을 준비할 때 꼭 챙겨야 할 것들",
          "한국의 전통 음악", "바다가 보이는 작은 마을에서"]
STEPS = 24
INT8 = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32,
        "KV_CACHE_PRECISION": "u8"}
# name: (cache form, weights export, compile settings, fill steps up to the thread count)
CANDIDATES = {
    "stateful-int8": ("stateful", "int8", INT8, False),
    "stateful-int8-f32-cache": ("stateful", "int8", {**INT8, "KV_CACHE_PRECISION": "f32"}, False),
    "stateful-f32-activations": ("stateful", "int8",
                                 {**INT8, "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}, False),
    "stateful-f32-activations-f32-cache": ("stateful", "int8", {
        **INT8, "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0, "KV_CACHE_PRECISION": "f32"}, False),
    "stateful-bf16": ("stateful", "int8", {"INFERENCE_PRECISION_HINT": "bf16"}, False),
    "paged-int8-unfilled": ("paged", "int8", INT8, False),
    "paged-int8": ("paged", "int8", INT8, True),
    "paged-int8-groups-128": ("paged", "int8", {**INT8, "DYNAMIC_QUANTIZATION_GROUP_SIZE": 128},
                              True),
    "paged-int8-groups-768": ("paged", "int8", {**INT8, "DYNAMIC_QUANTIZATION_GROUP_SIZE": 768},
                              True),
    "paged-int8-symmetric-weights": ("paged", "int8-sym", INT8, True),
    "paged-f32-activations": ("paged", "int8", {**INT8, "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
                              True),
}


def export(source: Path, out: Path, weights: str) -> Path:
    """The engine's own export; `int8-sym`: the same with symmetric int8 weights."""
    if (out / "openvino_model.xml").is_file():
        return out
    sys.path.insert(0, str(ROOT / "scripts"))
    from convert import convert

    from kogpt2.model.engines import openvino

    if weights == "int8-sym":
        import nncf

        openvino.compress_int8 = lambda model: nncf.compress_weights(
            model, mode=nncf.CompressWeightsMode.INT8_SYM)
    return convert(str(source), out, engine="openvino", progress=lambda *_: None)


def reference(source: Path, work: Path, threads: int) -> list[tuple[list[int], np.ndarray]]:
    """Transformers float32: 5 titles, each with its 40 greedy tokens, and the log-softmax
    after each position."""
    cached = work / "reference.npz"
    if not cached.exists():
        import torch
        from tokenizers import Tokenizer
        from transformers import GPT2LMHeadModel

        torch.set_num_threads(threads)
        tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        model = GPT2LMHeadModel.from_pretrained(source).eval()
        arrays = {}
        for i, title in enumerate(TITLES[:5]):
            prompt = tokenizer.encode(title, add_special_tokens=False).ids
            with torch.inference_mode():
                ids = model.generate(torch.tensor([prompt]), max_new_tokens=40, min_new_tokens=40,
                                     do_sample=False, repetition_penalty=2.0,
                                     pad_token_id=3)[0]
                logits = model(ids[None]).logits[0, :-1].double()
            arrays[f"ids{i}"] = ids.numpy()
            arrays[f"logprobs{i}"] = torch.log_softmax(logits, -1).numpy()
        np.savez(cached, **arrays)
    data = np.load(cached)
    return [(data[f"ids{i}"].tolist(), data[f"logprobs{i}"]) for i in range(5)]


class Stateful:
    """The cache form before issue 22: one stateful cache, every row a slot per step."""

    def __init__(self, model_dir: Path, threads: int, properties: dict):
        import openvino as ov

        compiled = ov.Core().compile_model(model_dir / "openvino_model.xml", "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            **properties})
        self.request = compiled.create_infer_request()

    def run(self, titles: list[list[int]], feeds: list[list[int]]) -> list[np.ndarray]:
        """Each row's logits after its title and after each of its fed tokens: the titles read
        in one step, left-padded to the widest, then a token a row a step."""
        self.request.reset_state()
        rows, width = len(titles), max(len(title) for title in titles)
        pads = [width - len(title) for title in titles]
        mask = [[0] * pad + [1] * len(title) for pad, title in zip(pads, titles, strict=True)]
        out = [self._infer([[0] * pad + title for pad, title in zip(pads, titles, strict=True)],
                           mask, [[0] * pad + list(range(len(title)))
                                  for pad, title in zip(pads, titles, strict=True)],
                           [row * width + width - 1 for row in range(rows)])]
        for step in range(len(feeds[0])):
            mask = [m + [1] for m in mask]
            out.append(self._infer([[feed[step]] for feed in feeds], mask,
                                   [[len(title) + step] for title in titles], list(range(rows))))
        return [np.array([logits[row] for logits in out]) for row in range(rows)]

    def _infer(self, ids, mask, positions, logits_at):
        self.request.infer({"input_ids": np.array(ids), "attention_mask": np.array(mask),
                            "position_ids": np.array(positions),
                            "logits_at": np.array(logits_at),
                            "beam_idx": np.arange(len(ids), dtype=np.int32)})
        return self.request.get_tensor("logits").data.copy()


class Paged:
    """The engine now: its paged cache and its step (with or without filling steps up to the
    thread count)."""

    def __init__(self, model_dir: Path, threads: int, properties: dict, fill: bool):
        from kogpt2.model.engines import openvino
        from kogpt2.model.vocab import load_tokenizer

        openvino.PROPERTIES["int8"] = properties
        self.engine = openvino.load(model_dir, threads=threads, compute_type="int8",
                                    tokenizer=load_tokenizer(model_dir))
        if not fill:
            self.engine._min_sequences = 0

    def run(self, titles, feeds, *, joining=False) -> list[np.ndarray]:
        """As Stateful.run, the titles read in one step; `joining`: each title read one step
        after the one before it, beside the others' decoding."""
        cache, forward = self.engine._cache, self.engine._forward
        sequences = [cache.sequence() for _ in titles]
        out: list[list[np.ndarray]] = [[] for _ in titles]
        fed = [0] * len(titles)
        started = 0 if joining else len(titles)
        if not joining:
            for row, logits in enumerate(forward([(seq, title, [len(title) - 1]) for seq, title
                                                  in zip(sequences, titles, strict=True)])):
                out[row].append(logits.copy())
        while any(count < len(feed) for count, feed in zip(fed, feeds, strict=True)):
            plan, rows = [], []
            for row in range(min(started, len(titles))):
                if fed[row] < len(feeds[row]):
                    plan.append((sequences[row], [feeds[row][fed[row]]], [0]))
                    rows.append(row)
                    fed[row] += 1
            if started < len(titles):
                plan.append((sequences[started], titles[started], [len(titles[started]) - 1]))
                rows.append(started)
                started += 1
            for row, logits in zip(rows, forward(plan), strict=True):
                out[row].append(logits.copy())
        for seq in sequences:
            cache.release(seq)
        return [np.array(rows) for rows in out]


def worker(args) -> dict:
    form, weights, properties, fill = CANDIDATES[args.worker]
    model_dir = args.work / f"ov-{weights}"
    runner = (Stateful(model_dir, args.threads, properties) if form == "stateful"
              else Paged(model_dir, args.threads, properties, fill))
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    titles = [tokenizer.encode(title, add_special_tokens=False).ids for title in TITLES]
    result = {"candidate": args.worker, "load": os.getloadavg()[0]}
    # Each title fed tokens of its own (any tokens do: the logits are compared), alone and with
    # the others.
    feeds = [np.random.default_rng(row).integers(10, 50000, STEPS).tolist()
             for row in range(len(titles))]
    alone = [runner.run([title], [feed])[0] for title, feed in zip(titles, feeds, strict=True)]
    together = runner.run(titles, feeds)
    result["max_diff_together"] = max(float(np.abs(a - b).max())
                                      for a, b in zip(alone, together, strict=True))
    if form == "paged":
        joined = runner.run(titles, feeds, joining=True)
        result["max_diff_joining"] = max(float(np.abs(a - b).max())
                                         for a, b in zip(alone, joined, strict=True))
    # Speed: one row, then 8.
    times = []
    for _ in range(3):
        started = time.perf_counter()
        runner.run([titles[0]], [[5] * 86])
        times.append((time.perf_counter() - started) / 86 * 1000)
    result["alone_ms_per_token"] = statistics.median(times)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        runner.run(titles, [[5] * 64] * 8)
        times.append(time.perf_counter() - started)
    result["eight_tokens_per_s"] = 8 * 64 / statistics.median(times)
    # Distance from transformers float32 along the decoding path.
    deltas = []
    for ids, reference_logprobs in reference(args.source, args.work, args.threads):
        logits = runner.run([ids[:1]], [ids[1:-1]])[0].astype(np.float64)
        logprobs = logits - logits.max(-1, keepdims=True)
        logprobs -= np.log(np.exp(logprobs).sum(-1, keepdims=True))
        nxt = np.array(ids[1:])
        deltas += np.abs(logprobs[np.arange(len(nxt)), nxt]
                         - reference_logprobs[np.arange(len(nxt)), nxt]).tolist()
    result["mean_abs_logprob_diff"] = float(np.mean(deltas))
    result["max_abs_logprob_diff"] = float(np.max(deltas))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kogpt2-stand-in",
                        dest="source")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "batch-invariance")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    names = args.candidates.split(",")
    for weights in sorted({CANDIDATES[name][1] for name in names}):
        export(args.source, args.work / f"ov-{weights}", weights)
    reference(args.source, args.work, args.threads)
    rows = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--worker", name, "--model",
                              str(args.source), "--work", str(args.work), "--threads",
                              str(args.threads)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"| candidate ({args.threads} threads) | alone ms/token | 8 at once tokens/s "
          "| max abs logit diff, 8 together / joining | mean / max abs logprob diff from "
          "transformers fp32 | load |")
    print("|---|---:|---:|---|---|---:|")
    for r in rows:
        joining = r.get("max_diff_joining")
        same = f"{r['max_diff_together']:.2g} / " + (f"{joining:.2g}" if joining is not None
                                                      else "n/a")
        print(f"| {r['candidate']} | {r['alone_ms_per_token']:.2f} "
              f"| {r['eight_tokens_per_s']:.0f} | {same} "
              f"| {r['mean_abs_logprob_diff']:.2e} / {r['max_abs_logprob_diff']:.2e} "
              f"| {r['load']:.1f} |")


if __name__ == "__main__":
    main()
