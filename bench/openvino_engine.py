#!/usr/bin/env python3
"""Measure the openvino engine alone (no HTTP): export, speed, memory, agreement with fp32.

    .venv/bin/python bench/openvino_engine.py models/kogpt2-stand-in --work /tmp/ov-bench
    .venv/bin/python bench/openvino_engine.py SRC --rows int8/bf16/1,int8/f32/1 --reps 3

Exports SOURCE (a transformers directory) to int8 and float32 under --work with
scripts/convert.py (reused when there), then runs each row (weights/compute/threads) in a
fresh process, one at a time: process start -> first answer, the warm default request
(4-token title, 86 new tokens, greedy, penalty 2.0), peak RSS, and agreement with
transformers fp32 on greedy requests for TITLES: how many tokens match before the first
difference (mean over titles), and, fed the reference's tokens, at how many steps the
penalized top-1 is the same. Random weights make the first number fragile (one flip changes
all that follows); the second one counts every step.
Each row shows the 1-minute load average when it started: this machine's 2 cores are shared.
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

TITLES = [  # the default request's title first: its speed is the one measured
    "근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "인공지능은 사람의 말을",
    "김치찌개를 맛있게 끓이려면", "바다를 보러 부산으로", "우리는 도서관에서 책을",
]
NEW_TOKENS = 86  # the original handler's 90 tokens with the 4-token title
# Compile settings besides the engine's own (openvino.PROPERTIES), to compare by name:
# e.g. the plugin's bf16 defaults without activation quantization.
EXPLORE = {
    "bf16-noquant": {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
}
ROWS = "int8/int8/1,int8/int8/2,int8/bf16/1,int8/bf16/2,int8/f32/1,int8/f32/2," \
       "float32/f32/1,float32/f32/2"

# transformers fp32, as the reference engine runs it: each title's greedy tokens, and the
# logits at each of their steps (one forward pass over title + tokens).
REFERENCE = r"""
import json, sys
import numpy as np, torch
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel
source, out, new, titles = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
tokenizer = Tokenizer.from_file(f"{source}/tokenizer.json")
model = GPT2LMHeadModel.from_pretrained(source).eval()
answers = []
for i, title in enumerate(titles):
    prompt = tokenizer.encode(title, add_special_tokens=False).ids
    with torch.inference_mode():
        ids = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
            dtype=torch.long), max_new_tokens=new, min_new_tokens=new, repetition_penalty=2.0,
            do_sample=False, pad_token_id=3)[0].tolist()
        logits = model(torch.tensor([ids])).logits[0, len(prompt) - 1:-1].numpy()
    np.save(f"{out}/reference-logits-{i}.npy", logits)
    answers.append({"prompt": prompt, "tokens": ids[len(prompt):]})
json.dump(answers, open(f"{out}/reference.json", "w"))
"""

WORKER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
from kogpt2.model.engines import openvino
from kogpt2.model.params import GenerationParams
from kogpt2.model.sampling import penalize
from kogpt2.model.seam import EngineRequest, Watch
from kogpt2.model.vocab import load_tokenizer
model_dir, compute, work = sys.argv[2], sys.argv[3], sys.argv[6]
threads, reps = int(sys.argv[4]), int(sys.argv[5])
openvino.PROPERTIES.update(json.loads(sys.argv[7]))
references = json.load(open(f"{work}/reference.json"))
engine = openvino.load(Path(model_dir), threads=threads, compute_type=compute,
                       tokenizer=load_tokenizer(Path(model_dir)))
params = GenerationParams()
def answer(prompt, new):
    started = time.perf_counter()
    [result] = engine.generate([EngineRequest(prompt, new, params, None, Watch())])
    [out] = result.rows
    return time.perf_counter() - started, out
prompt, expected = references[0]["prompt"], references[0]["tokens"]
_, first = answer(prompt, len(expected))
print("first answer", flush=True)
times = []
for _ in range(reps):
    seconds, out = answer(prompt, len(expected))
    assert out.token_ids == first.token_ids  # greedy: the same every time
    times.append(seconds)
agree, top1, steps = [], 0, 0
for i, reference in enumerate(references):
    prompt, expected = reference["prompt"], reference["tokens"]
    tokens = answer(prompt, len(expected))[1].token_ids
    agree.append(next((k for k, (a, b) in enumerate(zip(tokens, expected)) if a != b),
                      len(tokens)))
    # Fed the reference's tokens: the engine's penalized top-1 at each step vs the reference's.
    ref_logits = np.load(f"{work}/reference-logits-{i}.npy")
    cached = engine._cache.sequence()  # a sequence of the engine's cache, outside its loop
    seq = list(prompt)
    logits = engine._forward([(cached, prompt, [len(prompt) - 1])])[0].copy()
    for step, token in enumerate(expected):
        ref = ref_logits[step].copy()
        seen = list(dict.fromkeys(seq))
        penalize(logits, seen, 2.0)
        penalize(ref, seen, 2.0)
        top1 += int(np.argmax(logits) == np.argmax(ref))
        steps += 1
        seq.append(token)
        logits = engine._forward([(cached, [token], [0])])[0].copy()
    engine._cache.release(cached)
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"ms_per_token": [t / len(first.token_ids) * 1000 for t in times],
                  "tokens": len(first.token_ids), "reason": first.finish_reason,
                  "agree": agree, "top1": top1, "steps": steps,
                  "peak_rss_mb": rss / 1024, "compute_type": engine.compute_type}), flush=True)
"""


def export(source: Path, work: Path, weight_format: str) -> dict:
    out = work / f"ov-{weight_format}"
    if out.exists():
        return {"weights": weight_format, "reused": str(out)}
    load = os.getloadavg()[0]
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), str(source), str(out),
                    "--engine", "openvino", "--weight-format", weight_format], check=True)
    seconds = time.monotonic() - started
    size = sum(path.stat().st_size for path in out.iterdir()) / 1e6
    return {"weights": weight_format, "export_s": round(seconds, 1), "load": load,
            "size_mb": round(size)}


def run_row(work: Path, weights: str, compute: str, threads: int, reps: int) -> dict:
    load = os.getloadavg()[0]
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
    parser.add_argument("--rows", default=ROWS, help=f"default: {ROWS}")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [(w, c, int(t)) for w, c, t in (row.split("/") for row in args.rows.split(","))]
    for weights in sorted({w for w, _, _ in rows}):
        print(json.dumps(export(args.source, args.work, weights)), flush=True)
    if not (args.work / "reference.json").exists():
        subprocess.run([sys.executable, "-c", REFERENCE, str(args.source), str(args.work),
                        str(NEW_TOKENS), json.dumps(TITLES)], check=True)
    results = []
    for weights, compute, threads in rows:
        result = run_row(args.work, weights, compute, threads, args.reps)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"\n| weights | compute | threads | ms/token median (min–max) | first answer | "
          f"peak RSS | greedy = fp32 before 1st diff (mean of {len(TITLES)}) | "
          "top-1 = fp32, fed | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ms = r["ms_per_token"]
        print(f"| {r['weights']} | {r['compute']} | {r['threads']} | "
              f"{statistics.median(ms):.2f} ({min(ms):.2f}–{max(ms):.2f}) | "
              f"{r['first_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | "
              f"{statistics.mean(r['agree']):.1f} {r['agree']} | "
              f"{r['top1']} of {r['steps']} | {r['load']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
