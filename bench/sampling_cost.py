#!/usr/bin/env python3
"""What choosing a token costs (kogpt2/model/sampling.py), sampling against greedy.

    .venv/bin/python bench/sampling_cost.py MODEL_DIR --ov OV_DIR [--before DIR] [--threads 2]

MODEL_DIR is a transformers KoGPT2 directory (the full-size stand-in: scripts/make_stand_in.py).
Rows of logits come from it, 80 greedy steps after a title; a random-weight model's rows are
flat (top_p 0.9 keeps ~90% of the 51,200 tokens), a trained model's are peaked, so the same
rows are also measured scaled to a spread of 3 (its top_p 0.9 keeps ~2,000). Each mode is
timed per choice (the fastest of 5 passes over the rows). With --ov (an OpenVINO directory of
the same model), whole generations of 80 tokens too, OpenVINO int8, on the stand-in's own rows
and on rows rescaled to a spread of 3: greedy, top-p 0.9 without top-k, top-k 50, and 4
sequences of top-p 0.9, each against one greedy sequence.

--before DIR runs the same measurements, in the same run, on the code of another checkout
(e.g. the commit before a change) first, and prints its columns beside this one's;
--before-ov gives it its own export when the two read different export formats.
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
CODE = Path(os.environ.get("SAMPLING_COST_CODE", ROOT))  # the checkout whose kogpt2 is timed
sys.path.insert(0, str(CODE))

import numpy as np  # noqa: E402

from kogpt2.model import sampling  # noqa: E402
from kogpt2.model.params import GenerationParams  # noqa: E402
from kogpt2.model.sampling import RowSampler  # noqa: E402

TITLE = "근육이 커지기 위해서는"
STEPS = 80
ROUNDS = 11  # of whole generations, taking turns; the first warms up
SPREAD = 3.0
MODES = {
    "greedy (penalty 2.0)": GenerationParams(),
    "top_k 50": GenerationParams(do_sample=True),
    "top_p 0.9, top_k 0": GenerationParams(do_sample=True, top_k=0, top_p=0.9),
    "top_k 0 (whole vocabulary)": GenerationParams(do_sample=True, top_k=0),
}
CASES = {
    "greedy": GenerationParams(),
    "top_p 0.9, top_k 0": GenerationParams(do_sample=True, top_k=0, top_p=0.9),
    "top_k 50": GenerationParams(do_sample=True),
    "4 sequences, top_p 0.9, top_k 0": GenerationParams(
        do_sample=True, top_k=0, top_p=0.9, num_return_sequences=4),
}


def logit_rows(model_dir: Path, threads: int) -> tuple[np.ndarray, list[int]]:
    import torch
    from transformers import GPT2LMHeadModel

    from kogpt2.model.vocab import load_tokenizer

    torch.set_num_threads(threads)
    prompt = load_tokenizer(model_dir).encode(TITLE, add_special_tokens=False).ids
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=STEPS, do_sample=False,
                             repetition_penalty=2.0, pad_token_id=3, eos_token_id=None,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
        logits = model(ids).logits[0, len(prompt) - 1: -1].numpy()
    return logits, ids[0].tolist()


def per_choice_us(rows: np.ndarray, prompt: list[int], params) -> float:
    passes = []
    for _ in range(5):
        sampler = RowSampler(params, prompt, eos_id=1, seed=0 if params.do_sample else None)
        started = time.perf_counter()
        for row in rows:
            sampler.choose(row.copy())
        passes.append((time.perf_counter() - started) / len(rows))
    return min(passes) * 1e6  # the least disturbed pass: other work only adds time


def choice_costs(rows, sequence) -> dict:
    """µs per choice, by mode and rows (flat, peaked); top_p 0.9's kept counts."""
    prompt = sequence[: len(sequence) - len(rows)]
    blocks = {"flat": rows, "peaked": rows / rows.std(axis=1, keepdims=True) * SPREAD}
    costs = {mode: {name: per_choice_us(block, prompt, params) for name, block in blocks.items()}
             for mode, params in MODES.items()}
    kept = {name: statistics.median(len(sampling.nucleus(row, 0.9)) for row in block)
            for name, block in blocks.items()}
    return {"choice_us": costs, "kept": kept}


def generation_ms(ov_dir: Path, threads: int) -> dict:
    """Median ms of whole generations by case, on flat rows and on rows rescaled to SPREAD."""
    from kogpt2.model import engines
    from kogpt2.model.seam import EngineRequest, Watch
    from kogpt2.model.vocab import load_tokenizer

    tokenizer = load_tokenizer(ov_dir)
    engine = engines.load(engines.OPENVINO, ov_dir, threads=threads, compute_type="default",
                          tokenizer=tokenizer)
    prompt = tokenizer.encode(TITLE, add_special_tokens=False).ids
    infer = engine._infer

    def peaked(*args, **kwargs):  # every step's logits rescaled, in every case alike
        logits = infer(*args, **kwargs)
        return logits / logits.std(axis=-1, keepdims=True) * SPREAD

    medians = {}
    for rows, call in (("flat", infer), ("peaked", peaked)):
        engine._infer = call
        times = {name: [] for name in CASES}
        for _ in range(ROUNDS):  # taking turns; the first round warms up
            for name, params in CASES.items():
                started = time.perf_counter()
                engine.generate([EngineRequest(prompt, STEPS, params, 1, Watch())])
                times[name].append(time.perf_counter() - started)
        medians[rows] = {name: statistics.median(spent[1:]) * 1000
                         for name, spent in times.items()}
    return {"generation_ms": medians, "compute": engine.compute_type}


def measure(model_dir: Path, ov_dir: Path | None, threads: int) -> dict:
    rows, sequence = logit_rows(model_dir, threads)
    result = choice_costs(rows, sequence)
    if ov_dir:
        result.update(generation_ms(ov_dir, threads))
    return result


def load_average() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def tables(runs: dict[str, dict], threads: int) -> list[str]:
    """Markdown tables of every run (`runs`: label -> measure()), side by side."""
    labels = list(runs)
    head = " | ".join(f"{label}: {rows} µs" for label in labels for rows in ("flat", "peaked"))
    lines = [f"| per choice | {head} |", "|---|" + "---:|" * (2 * len(labels))]
    for mode in MODES:
        cells = [f"{runs[label]['choice_us'][mode][rows]:,.0f}" for label in labels
                 for rows in ("flat", "peaked")]
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    kept = runs[labels[-1]]["kept"]
    lines.append(f"\ntop_p 0.9 keeps, median: {kept['flat']:,.0f} tokens (flat rows), "
                 f"{kept['peaked']:,.0f} (peaked rows, spread {SPREAD:g})")
    if "generation_ms" not in runs[labels[-1]]:
        return lines
    compute = runs[labels[-1]]["compute"]
    for rows in ("flat", "peaked"):
        title = "the stand-in's own (flat) rows" if rows == "flat" else (
            f"rows rescaled to spread {SPREAD:g} (peaked)")
        lines += ["", f"{STEPS} tokens, OpenVINO {compute}, {threads} threads, {title}:", "",
                  "| case | " + " | ".join(f"{label}: ms | {label}: × greedy"
                                          for label in labels) + " |",
                  "|---|" + "---:|---:|" * len(labels)]
        for case in CASES:
            cells = []
            for label in labels:
                spent = runs[label]["generation_ms"][rows]
                cells += [f"{spent[case]:,.0f}", f"{spent[case] / spent['greedy']:.2f}"]
            lines.append(f"| {case} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--ov", type=Path, help="an OpenVINO export of the same model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--before", type=Path, help="another checkout, timed first")
    parser.add_argument("--before-ov", type=Path, help="the --before checkout's own OpenVINO "
                        "export, where its format differs (default: --ov)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a --before run
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.model_dir, args.ov, args.threads)))
        return
    print(f"load average before: {load_average()}")
    runs = {}
    if args.before:
        command = [sys.executable, __file__, str(args.model_dir), "--threads", str(args.threads),
                   "--json"]
        before_ov = args.before_ov or args.ov
        command += ["--ov", str(before_ov)] if before_ov else []
        env = {**os.environ, "SAMPLING_COST_CODE": str(args.before.resolve())}
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"the --before run failed:\n{out.stderr[-3000:]}")
        runs["before"] = json.loads(out.stdout.splitlines()[-1])
    runs["this" if not args.before else "after"] = measure(args.model_dir, args.ov, args.threads)
    print("\n".join(tables(runs, args.threads)))
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
