#!/usr/bin/env python3
"""How far each engine's log-probabilities are from transformers float32's.

    .venv/bin/python bench/logprobs_distance.py MODEL_DIR [--work DIR] [--threads 2]

MODEL_DIR is a transformers KoGPT2 directory (the full-size stand-in: scripts/make_stand_in.py;
the real model where the hub is at hand). The engines' copies are prepared into --work
(scripts/convert.py). For a few titles, each followed by the reference's 40 greedy tokens,
every position's log-softmax is compared with the reference's:

- prompt log-probabilities (echo scoring, lm-eval's loglikelihood) through the Generator, on
  every engine (OpenVINO reads the whole sequence in one step);
- OpenVINO's decoding path too, fed the same tokens one by one (its stateful model, its
  attention cache included), where generated tokens' log-probabilities come from.

It prints, per engine: the mean and largest |difference| of the actual next token's
log-probability, the mean KL divergence from the reference's distribution, and how often the
top token agrees. Random weights make flat distributions (every log-probability near
-ln 51,200): the real model is the test that counts (bench/quality.py).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kogpt2.model import GenerationParams, Generator  # noqa: E402

TITLES = ["근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "인공지능은 사람의 말을",
          "바다를 보러 부산으로", "김치찌개는 한국 사람들이"]
NEW = 40


def prepare(source: Path, work: Path, engine: str, weight_format: str) -> Path:
    out = work / f"{engine}-{weight_format}"
    if not out.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), str(source),
                        str(out), "--engine", engine, "--weight-format", weight_format],
                       check=True, capture_output=True)
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    scores = logits.astype(np.float64)
    top = scores.max(axis=-1, keepdims=True)
    return scores - top - np.log(np.exp(scores - top).sum(axis=-1, keepdims=True))


def reference_rows(source: Path, threads: int):
    """Each title with the reference's greedy continuation, and its full log-softmax rows."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(threads)
    generator = Generator(str(source), engine="transformers", threads=threads)
    model = GPT2LMHeadModel.from_pretrained(source).eval()
    sequences, rows = [], []
    for title in TITLES:
        result = generator.generate(title, GenerationParams(max_new_tokens=NEW))
        ids = result.prompt_ids + result.sequences[0].token_ids
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0].numpy()
        sequences.append(ids)
        rows.append(log_softmax(logits[:-1]))
    return generator, sequences, rows


def openvino_rows(engine, sequences):
    """The stateful model's own logits, fed each sequence token by token (its decode path):
    `engine` is a loaded openvino engine."""
    rows = []
    for ids in sequences:
        cached = engine._cache.sequence()  # a sequence of the engine's cache, outside its loop
        steps = [engine._forward([(cached, [token], [0])])[0].copy() for token in ids[:-1]]
        engine._cache.release(cached)
        rows.append(log_softmax(np.array(steps)))
    return rows


def prompt_rows(generator: Generator, sequences):
    """Prompt log-probabilities through the Generator (top 5 only: enough for top-1)."""
    params = GenerationParams(max_new_tokens=0, prompt_logprobs=5)
    rows = []
    for ids in sequences:
        scored = generator.generate(ids, params).prompt_logprobs[1:]
        rows.append([(entry.logprob, entry.top[0][0]) for entry in scored])
    return rows


def distance(sequences, reference, got, full: bool) -> dict:
    deltas, kls, agree, total = [], [], 0, 0
    for ids, ref, mine in zip(sequences, reference, got, strict=True):
        for i, token in enumerate(ids[1:]):
            if full:
                logprob, top = mine[i][token], int(np.argmax(mine[i]))
                p = np.exp(ref[i])
                kls.append(float((p * (ref[i] - mine[i])).sum()))
            else:
                logprob, top = mine[i]
            deltas.append(abs(logprob - ref[i][token]))
            agree += top == int(np.argmax(ref[i]))
            total += 1
    return {"mean": float(np.mean(deltas)), "max": float(np.max(deltas)),
            "kl": float(np.mean(kls)) if kls else None, "top1": agree / total, "n": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "logprobs-distance")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    reference_generator, sequences, reference = reference_rows(args.model_dir, args.threads)
    table = [("transformers float32, prompt logprobs",
              distance(sequences, reference, prompt_rows(reference_generator, sequences), False))]
    for engine in ("ctranslate2", "openvino"):
        for weight_format in ("int8", "float32"):
            model_dir = prepare(args.model_dir, args.work, engine, weight_format)
            generator = Generator(str(model_dir), engine=engine, threads=args.threads)
            loaded = generator.load(wait=True)
            rows = prompt_rows(generator, sequences)
            table.append((f"{engine} {loaded.compute_type}, prompt logprobs",
                          distance(sequences, reference, rows, False)))
            if engine == "openvino":
                table.append((f"openvino {loaded.compute_type}, decode path",
                              distance(sequences, reference, openvino_rows(loaded, sequences),
                                       True)))
    print(f"| engine ({len(TITLES)} titles + {NEW} greedy tokens, {table[0][1]['n']} positions) "
          "| mean abs diff | max abs diff | mean KL | top-1 agrees |")
    print("|---|---:|---:|---:|---:|")
    for label, row in table:
        kl = f"{row['kl']:.2e}" if row["kl"] is not None else "n/a"
        print(f"| {label} | {row['mean']:.2e} | {row['max']:.2e} | {kl} | {row['top1']:.1%} |")


if __name__ == "__main__":
    main()
