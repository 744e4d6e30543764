#!/usr/bin/env python3
"""A batch of prompts (one /v1/completions request with 20 prompts) against one prompt alone.

    .venv/bin/python bench/prompt_batch.py [--model DIR] [--threads 2] [--prompts 20]

Full-size stand-in by default (bench/bench.py builds it), 16 new tokens a prompt (ignore_eos:
every prompt writes all 16), greedy. Each engine's prepared int8 copy comes from the bench's
cache (models/bench-cache), as the app prepares it. Prints the median of 3 runs of each, and
the ratio; the issue's target is a 20-prompt batch in at most 4x one prompt's time.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kogpt2.model import GenerationParams, Generator  # noqa: E402

TITLES = [
    "근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "바다가 보이는 작은 마을에서",
    "인공지능이 바꾸는 미래의 직업", "김치찌개를 맛있게 끓이는 방법", "가을", "우리 동네 도서관",
    "겨울 산행을 준비할 때 꼭 챙겨야 할 것들", "첫 출근 날", "한국의 전통 음악",
]


def timed(generator, prompts, reps=3) -> float:
    runs = []
    for _ in range(reps):
        started = time.perf_counter()
        results = generator.run(prompts)
        runs.append(time.perf_counter() - started)
        assert all(len(s.token_ids) == 16 for r in results for s in r.sequences)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "kogpt2-stand-in"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--engines", default="openvino,ctranslate2,transformers")
    parser.add_argument("--rows", type=int, default=None, help="KOGPT2_MAX_BATCH_ROWS")
    args = parser.parse_args()
    params = GenerationParams(max_new_tokens=16, ignore_eos=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"| engine | one prompt ms | {args.prompts} prompts ms | × |")
    print("|---|---|---|---|")
    for engine in args.engines.split(","):
        generator = Generator(args.model, engine=engine, threads=args.threads,
                              cache_dir=ROOT / "models" / "bench-cache", max_batch_rows=args.rows)
        texts = [TITLES[i % len(TITLES)] + (f" {i}" if i >= len(TITLES) else "")
                 for i in range(args.prompts)]
        prompts = [generator.check(text, params) for text in texts]
        generator.load(wait=True)  # a first run prepares the engine's copy
        generator.run(prompts[:2])  # warm
        one = timed(generator, prompts[:1])
        many = timed(generator, prompts)
        print(f"| {engine} | {one * 1000:.0f} | {many * 1000:.0f} | {many / one:.2f} |")
    print(f"\n{args.threads} threads, 16 new tokens a prompt, greedy; load average before "
          f"{' '.join(load)}, after {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
