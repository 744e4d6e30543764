#!/usr/bin/env python3
"""Measure the openvino engine alone (no HTTP): export, speed, memory, agreement with fp32.

    .venv/bin/python bench/openvino_engine.py models/kogpt2-stand-in --work /tmp/ov-bench

Exports SOURCE (a transformers directory) to int8 and fp32 under --work (reused when there),
then runs each (weights, compute, threads) in a fresh process, one at a time: process start ->
first answer, the warm default request (4-token title, 86 new tokens, greedy, penalty 2.0),
peak RSS, and two agreements with transformers fp32 on the same request: how many greedy tokens
match before the first difference, and, fed the reference's tokens, at how many of the 86
steps the penalized top-1 is the same (random weights make the first number fragile: one
early flip changes all that follows). Each row shows the 1-minute load average when it ran.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TITLE = "근육이 커지기 위해서는"
NEW_TOKENS = 86  # the original handler's 90 tokens with the 4-token title
# Other compile settings to compare, by name (--rows int8/f32-plugin/1): the plugin's defaults
# at f32 (attention cache u8, activations quantized on the fly), bf16 without either.
EXPLORE = {
    "f32-plugin": {"INFERENCE_PRECISION_HINT": "f32"},
    "bf16-exact-cache": {"INFERENCE_PRECISION_HINT": "bf16", "KV_CACHE_PRECISION": "bf16",
                         "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
}
ROWS = [  # weights, compute, threads
    ("int8", "bf16", 1), ("int8", "bf16", 2),
    ("int8", "f32", 1), ("int8", "f32", 2),
    ("fp32", "f32", 1), ("fp32", "f32", 2),
]

EXPORT = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from kogpt2.model.engines import openvino
started = time.monotonic()
def progress(stage, fraction):
    print(f"  {time.monotonic() - started:5.1f} s  {stage}", file=sys.stderr, flush=True)
openvino.prepare(Path(sys.argv[2]), Path(sys.argv[3]), weight_format=sys.argv[4],
                 progress=progress)
"""

# transformers fp32, as the reference engine runs it: the greedy tokens, and the logits at
# each of their steps (one forward pass over title + tokens).
REFERENCE = r"""
import json, sys
import numpy as np, torch
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel
source, out, title, new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prompt = Tokenizer.from_file(f"{source}/tokenizer.json").encode(
    title, add_special_tokens=False).ids
model = GPT2LMHeadModel.from_pretrained(source).eval()
with torch.inference_mode():
    ids = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
        dtype=torch.long), max_new_tokens=new, min_new_tokens=new, repetition_penalty=2.0,
        do_sample=False, pad_token_id=3)[0].tolist()
    logits = model(torch.tensor([ids])).logits[0, len(prompt) - 1:-1].numpy()
np.save(f"{out}/reference-logits.npy", logits)
json.dump({"prompt": prompt, "tokens": ids[len(prompt):]}, open(f"{out}/reference.json", "w"))
"""

WORKER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
from kogpt2.model.engines import openvino
from kogpt2.model.params import GenerationParams
from kogpt2.model.seam import Watch
model_dir, compute, work = sys.argv[2], sys.argv[3], sys.argv[6]
threads, reps = int(sys.argv[4]), int(sys.argv[5])
openvino.PROPERTIES.update(json.loads(sys.argv[7]))
reference = json.load(open(f"{work}/reference.json"))
prompt, expected = reference["prompt"], reference["tokens"]
engine = openvino.load(Path(model_dir), threads=threads, compute_type=compute)
params = GenerationParams()
def answer():
    started = time.perf_counter()
    [out] = engine.generate(prompt, max_new_tokens=len(expected), params=params, seed=None,
                            watch=Watch())
    return time.perf_counter() - started, out
_, first = answer()
print("first answer", flush=True)
times = []
for _ in range(reps):
    os.sched_yield()
    seconds, out = answer()
    assert out.token_ids == first.token_ids  # greedy: the same every time
    times.append(seconds)
tokens = first.token_ids
same = next((i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b), len(tokens))
# Fed the reference's tokens: the engine's penalized top-1 at each step against the reference's.
ref_logits = np.load(f"{work}/reference-logits.npy")
with engine._lock:
    engine._request.reset_state()
    seq = list(prompt)
    logits = engine._step(np.array([prompt]), len(prompt), np.zeros(1, np.int32))[0]
    top1 = 0
    errors = []
    for step, token in enumerate(expected):
        ref = ref_logits[step].copy()
        errors.append(float(np.sqrt(np.mean((logits - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))))
        seen = list(dict.fromkeys(seq))
        openvino.penalize(logits, seen, 2.0); openvino.penalize(ref, seen, 2.0)
        top1 += int(np.argmax(logits) == np.argmax(ref))
        seq.append(token)
        logits = engine._step(np.array([[token]]), len(seq), np.zeros(1, np.int32))[0]
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"ms_per_token": [t / len(tokens) * 1000 for t in times],
                  "tokens": len(tokens), "reason": first.finish_reason,
                  "agree": same, "top1": top1, "rel_error": float(np.median(errors)),
                  "peak_rss_mb": rss / 1024, "compute_type": engine.compute_type}), flush=True)
"""


def load_average() -> float:
    return os.getloadavg()[0]


def export(source: Path, work: Path, weight_format: str) -> dict:
    out = work / f"ov-{weight_format}"
    if out.exists():
        return {"weights": weight_format, "reused": True}
    out.mkdir(parents=True)
    load = load_average()
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", EXPORT, str(ROOT), str(source), str(out),
                    weight_format], check=True)
    seconds = time.monotonic() - started
    size = sum(path.stat().st_size for path in out.iterdir()) / 1e6
    return {"weights": weight_format, "seconds": seconds, "load": load, "size_mb": size}


def run_row(work: Path, weights: str, compute: str, threads: int, reps: int) -> dict:
    load = load_average()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(ROOT), str(work / f"ov-{weights}"), compute,
         str(threads), str(reps), str(work), json.dumps(EXPLORE)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "first answer"
    first = time.monotonic() - started
    result = json.loads(process.stdout.readline())
    process.wait()
    return {"weights": weights, "compute": compute, "threads": threads, "first_s": first,
            "load": load, **result}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="transformers model directory")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kogpt2-ov-bench"))
    parser.add_argument("--reps", type=int, default=5, help="warm requests per row")
    parser.add_argument("--rows", default="all", help="e.g. int8/bf16/1,fp32/f32/2")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    for weights in ("int8", "fp32"):
        print(json.dumps(export(args.source, args.work, weights)), flush=True)
    if not (args.work / "reference.json").exists():
        subprocess.run([sys.executable, "-c", REFERENCE, str(args.source), str(args.work),
                        TITLE, str(NEW_TOKENS)], check=True)
    rows = ROWS if args.rows == "all" else [
        (w, c, int(t)) for w, c, t in (row.split("/") for row in args.rows.split(","))
    ]
    results = []
    for weights, compute, threads in rows:
        result = run_row(args.work, weights, compute, threads, args.reps)
        print(json.dumps(result), flush=True)
        results.append(result)
    print("\n| weights | compute | threads | ms/token median (min–max) | first answer | "
          "peak RSS | greedy tokens = fp32 | top-1 = fp32 (fed) | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ms = r["ms_per_token"]
        print(f"| {r['weights']} | {r['compute']} | {r['threads']} | "
              f"{statistics.median(ms):.2f} ({min(ms):.2f}–{max(ms):.2f}) | "
              f"{r['first_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | {r['agree']} of "
              f"{r['tokens']} | {r['top1']} of {NEW_TOKENS} | {r['load']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
