#!/usr/bin/env python3
"""What choosing a token costs per step (kogpt2/model/sampling.py), sampling against greedy.

    .venv/bin/python bench/sampling_cost.py MODEL_DIR [--ov OV_DIR] [--threads 2]

MODEL_DIR is a transformers KoGPT2 directory (the full-size stand-in: scripts/make_stand_in.py).
Rows of logits come from it, 80 greedy steps after a title; a random-weight model's rows are
flat (top_p 0.9 keeps ~90% of the 51,200 tokens), a trained model's are peaked, so the same
rows are also measured scaled to a spread of 3 (its top_p 0.9 keeps a few hundred). Each mode
is timed per choice (the fastest of 5 passes over the rows), against the full sort it replaces.
With --ov (an OpenVINO directory of the same model), whole generations of 80 tokens too, on
the stand-in's own rows and on rows rescaled to a spread of 3.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kogpt2.model import sampling  # noqa: E402
from kogpt2.model.params import GenerationParams  # noqa: E402
from kogpt2.model.sampling import RowSampler  # noqa: E402

TITLE = "근육이 커지기 위해서는"
STEPS = 80
MODES = {
    "greedy (penalty 2.0)": GenerationParams(),
    "top_k 50": GenerationParams(do_sample=True),
    "top_p 0.9, top_k 0": GenerationParams(do_sample=True, top_k=0, top_p=0.9),
    "top_k 0 (whole vocabulary)": GenerationParams(do_sample=True, top_k=0),
}


def full_sort_distribution(logits, params):
    """top_p as it was before sampling.nucleus: a stable sort of every candidate."""
    scores = logits / np.float32(params.temperature) if params.temperature != 1 else logits
    order = np.argsort(scores, kind="stable")
    keep = np.cumsum(sampling.softmax(scores[order])) > 1 - params.top_p
    keep[-1] = True
    return order[keep], sampling.softmax(scores[order[keep]])


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


def per_choice_us(rows: np.ndarray, sequence: list[int], choose) -> float:
    passes = []
    for _ in range(5):
        started = time.perf_counter()
        for step, row in enumerate(rows):
            choose(row.copy(), sequence[: len(sequence) - len(rows) + step])
        passes.append((time.perf_counter() - started) / len(rows))
    return min(passes) * 1e6  # the least disturbed pass: other work only adds time


def choice_table(rows, sequence) -> list[str]:
    lines = ["| mode | flat rows (stand-in): µs/choice | peaked rows (spread 3): µs/choice |",
             "|---|---:|---:|"]
    peaked = rows / rows.std(axis=1, keepdims=True) * 3
    kept = {name: [] for name in ("flat", "peaked")}
    for name, block in (("flat", rows), ("peaked", peaked)):
        for row in block:
            kept[name].append(len(sampling.nucleus(row, 0.9)))
    for mode, params in MODES.items():
        cells = []
        for block in (rows, peaked):
            def choose(row, seen, params=params):
                sampler = RowSampler(params, seen, eos_id=1, seed=0 if params.do_sample else None)
                sampler.choose(row)
            cells.append(f"{per_choice_us(block, sequence, choose):,.0f}")
        lines.append(f"| {mode} | {cells[0]} | {cells[1]} |")
    params = MODES["top_p 0.9, top_k 0"]
    cells = []
    for block in (rows, peaked):
        rng = np.random.default_rng(0)

        def choose(row, seen, rng=rng):
            sampling.penalize(row, list(dict.fromkeys(seen)), 2.0)
            candidates, probs = full_sort_distribution(row, params)
            sampling.draw(probs, rng)
        cells.append(f"{per_choice_us(block, sequence, choose):,.0f}")
    lines.append(f"| top_p 0.9, top_k 0, the full sort it replaces | {cells[0]} | {cells[1]} |")
    lines.append(f"\ntop_p 0.9 keeps, median: {statistics.median(kept['flat']):,.0f} tokens "
                 f"(flat), {statistics.median(kept['peaked']):,.0f} (peaked)")
    return lines


def generation_table(ov_dir: Path, threads: int, spread: float | None = None) -> list[str]:
    """Whole generations; with `spread`, every step's logits rescaled to that standard
    deviation first (in every mode alike), as a trained model's peaked rows."""
    from kogpt2.model import engines
    from kogpt2.model.seam import EngineRequest, Watch
    from kogpt2.model.vocab import load_tokenizer

    tokenizer = load_tokenizer(ov_dir)
    engine = engines.load(engines.OPENVINO, ov_dir, threads=threads, compute_type="default",
                          tokenizer=tokenizer)
    prompt = tokenizer.encode(TITLE, add_special_tokens=False).ids
    if spread is not None:
        infer = engine._infer

        def peaked(*args):
            logits = infer(*args)
            return logits / logits.std(axis=-1, keepdims=True) * spread

        engine._infer = peaked
    cases = {
        "greedy": GenerationParams(),
        "top_p 0.9, top_k 0": GenerationParams(do_sample=True, top_k=0, top_p=0.9),
        "top_k 50": GenerationParams(do_sample=True),
        "4 sequences, top_p 0.9, top_k 0": GenerationParams(
            do_sample=True, top_k=0, top_p=0.9, num_return_sequences=4),
    }
    times = {name: [] for name in cases}
    for _ in range(6):  # taking turns; the first round warms up
        for name, params in cases.items():
            started = time.perf_counter()
            engine.generate([EngineRequest(prompt, STEPS, params, 1, Watch())])
            times[name].append(time.perf_counter() - started)
    greedy = statistics.median(times["greedy"][1:])
    rows = "flat rows" if spread is None else f"rows rescaled to spread {spread:g}"
    lines = [f"| {STEPS} tokens, OpenVINO {engine.compute_type}, {threads} threads, {rows} "
             "| ms (median of 5) | × greedy |", "|---|---:|---:|"]
    for name, spent in times.items():
        median = statistics.median(spent[1:])
        lines.append(f"| {name} | {median * 1000:,.0f} | {median / greedy:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--ov", type=Path, help="an OpenVINO export of the same model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows, sequence = logit_rows(args.model_dir, args.threads)
    print("\n".join(choice_table(rows, sequence)))
    if args.ov:
        print()
        print("\n".join(generation_table(args.ov, args.threads)))
        print()
        print("\n".join(generation_table(args.ov, args.threads, spread=3.0)))
    print(f"\nload average: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
