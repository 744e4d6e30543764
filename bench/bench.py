#!/usr/bin/env python3
"""Benchmark the engines through the real HTTP app against the original Lambda handler.

    .venv/bin/python bench/bench.py            # full-size stand-in, ~5 minutes on 2 cores
    .venv/bin/python bench/bench.py --quick    # tiny stand-in: checks the bench itself

One run measures, for each contender in a fresh process: process start -> first answer, the
warm default request (median of --reps, taking turns between contenders), ms per new token,
tokens/s at batch 1 and with 4 concurrent requests, and peak RSS; for the default engine also
the time to the first token of a stream. It measures the memory bandwidth too, and prints a
markdown table with ratios to the baseline and to the bandwidth bound (the weights read once
per token).
The table is also written to artifacts/. The baseline is the original handler as it ran:
transformers fp32 in a plain process, no HTTP. The others run `gunicorn app:app` on 127.0.0.1.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from local_server import LocalServer  # noqa: E402

TITLE = "근육이 커지기 위해서는"  # the default request: {"text": TITLE}
CONCURRENT = 4

# The original Lambda handler, as it ran: model loaded at import, greedy, 90 tokens in all.
ORIGINAL_HANDLER = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

model_dir, concurrent, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
tokenizer = PreTrainedTokenizerFast.from_pretrained(
    model_dir, bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    mask_token="<mask>")
model = GPT2LMHeadModel.from_pretrained(model_dir)
model.eval()

def handler(event, context):
    text = event["context"]["main_title"]
    input_ids = tokenizer.encode(text)
    gen_ids = model.generate(
        torch.tensor([input_ids]), max_length=90, repetition_penalty=2.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, use_cache=True)
    generated = tokenizer.decode(gen_ids[0, :].tolist())
    return {"answer": {"gen_text": [generated]}}, gen_ids.shape[1] - len(input_ids)

def timed():
    started = time.monotonic()
    _, new_tokens = handler({"context": {"main_title": TITLE}}, None)
    return time.monotonic() - started, new_tokens

def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def answer(value):
    print(json.dumps(value), flush=True)

TITLE = "근육이 커지기 위해서는"
full = 90 - len(tokenizer.encode(TITLE))  # fewer new tokens than this: it met </s>
timed()
answer("first answer")
for command in sys.stdin:  # the bench asks; this process answers one line each
    if command.strip() == "warm":
        seconds, new_tokens = timed()
        answer({"seconds": seconds, "tokens": new_tokens,
                "reason": "length" if new_tokens == full else "eos"})
    elif command.strip() == "concurrent":
        started = time.monotonic()
        with ThreadPoolExecutor(concurrent) as pool:
            together = list(pool.map(lambda _: timed(), range(concurrent)))
        answer({"wall": time.monotonic() - started, "tokens": sum(n for _, n in together),
                "reasons": sorted({"length" if n == full else "eos" for _, n in together})})
    else:
        answer({"rss_mb": peak_rss_mb(), "compute_type": "float32"})
        break
"""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def measure_bandwidth_gbs() -> tuple[float, str]:
    """Read bandwidth: best of several sums over a 512 MiB array, with all threads."""
    try:
        import torch

        data = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
        how = f"torch sum, {torch.get_num_threads()} threads"
        total = data.sum
    except ImportError:
        import numpy

        data = numpy.ones(128 * 1024 * 1024, dtype=numpy.float32)
        how = "numpy sum, 1 thread"
        total = data.sum
    total()
    best = min(_seconds(total) for _ in range(5))
    return data.nbytes / best / 1e9, how


def _seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


class OriginalHandler:
    """The original handler in its own process, answering the bench's commands one by one."""

    def __init__(self, model_dir: Path, threads: int):
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", ORIGINAL_HANDLER, str(model_dir), str(CONCURRENT),
             str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.ask(None)
        self.cold_s = time.monotonic() - started

    def ask(self, command: str | None):
        if command:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the original handler failed with {self.process.wait()}")
        return json.loads(line)

    def request(self) -> tuple[float, int, str]:
        answer = self.ask("warm")
        return answer["seconds"], answer["tokens"], answer["reason"]

    def concurrent(self) -> tuple[float, int, list[str]]:
        answer = self.ask("concurrent")
        return answer["wall"], answer["tokens"], answer["reasons"]

    def stop(self) -> tuple[float, str]:
        answer = self.ask("stop")
        self.process.wait(timeout=30)
        return answer["rss_mb"], answer["compute_type"]


def post(base: str, body: dict) -> tuple[float, dict]:
    request = urllib.request.Request(
        f"{base}/generate", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    return time.monotonic() - started, answer


class App:
    """`gunicorn app:app` on 127.0.0.1 serving the transformers `model_dir` with `engine`, its
    prepared copy (if the engine has one) already in `cache`: a second start."""

    def __init__(self, model_dir: Path, engine: str, threads: int, cache: Path):
        env = {"KOGPT2_MODEL": str(model_dir), "KOGPT2_ENGINE": engine,
               "KOGPT2_THREADS": str(threads), "KOGPT2_CACHE_DIR": str(cache),
               # The concurrent round queues 3 requests behind one generation; the default
               # 5 s queue timeout would refuse the last of them on the slower engines.
               "KOGPT2_QUEUE_TIMEOUT_S": "20"}
        started = time.monotonic()
        self.server = LocalServer(env, "--log-level", "warning").start()
        self.base, self.process = self.server.base, self.server.process
        try:
            post(self.base, {"text": TITLE})  # the model loads on the first request
        except BaseException:
            self.server.stop()
            raise
        self.cold_s = time.monotonic() - started

    def request(self) -> tuple[float, int, str]:
        seconds, answer = post(self.base, {"text": TITLE})
        details = answer["details"]
        return seconds, details["generated_tokens"], details["finish_reason"]

    def concurrent(self) -> tuple[float, int, list[str]]:
        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENT) as pool:
            together = list(pool.map(lambda _: post(self.base, {"text": TITLE}),
                                     range(CONCURRENT)))
        wall = time.monotonic() - started
        details = [answer["details"] for _, answer in together]
        return (wall, sum(d["generated_tokens"] for d in details),
                sorted({d["finish_reason"] for d in details}))

    def stop(self) -> tuple[float, str]:
        with urllib.request.urlopen(f"{self.base}/info", timeout=5) as response:
            compute_type = json.loads(response.read())["compute_type"]
        rss = max(peak_rss_mb(pid) for pid in self.server.worker_pids())
        self.server.stop()
        return rss, compute_type


# --- time to first token (issue 11): one function and one report line, apart from the rest ---

def time_to_first_token_ms(base: str, reps: int) -> float:
    """Median ms from sending the default request with "stream": true to its first token
    event, warm, through HTTP; each stream is read to its end so none is cancelled."""
    times = []
    for _ in range(reps):
        request = urllib.request.Request(
            f"{base}/generate", data=json.dumps({"text": TITLE, "stream": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=120) as response:
            first = response.readline()
            times.append((time.monotonic() - started) * 1000)
            response.read()
        if not first.startswith(b'data: {"token"'):
            raise SystemExit(f"the stream did not start with a token: {first[:200]!r}")
    return statistics.median(times)


def settle() -> None:
    """Let the previous contender's worker threads go idle before the next one is timed:
    OpenMP's threads (torch, CTranslate2) spin for a while after their work, on the same two
    cores."""
    time.sleep(0.5)


def summarise(cold_s, warm, concurrent, rss_mb, compute_type) -> dict:
    seconds = statistics.median(s for s, _, _ in warm)
    tokens = statistics.median(n for _, n, _ in warm)
    wall, concurrent_tokens, reasons = concurrent
    return {
        "cold_s": cold_s,
        "warm_ms": seconds * 1000,
        "new_tokens": tokens,
        "ms_per_token": seconds * 1000 / tokens,
        "tokens_per_s": tokens / seconds,
        "concurrent_tokens_per_s": concurrent_tokens / wall,
        "rss_mb": rss_mb,
        "compute_type": compute_type,
        "finish_reasons": sorted({r for _, _, r in warm} | set(reasons)),
    }


def prepare_models(args) -> tuple[Path, Path, dict[str, Path]]:
    """The transformers stand-in (built if missing), and each engine's prepared copy of it in
    the bench's cache, as the app prepares it on its first start (reused when there)."""
    from make_stand_in import stand_in_at

    from kogpt2.model import engines, prepare
    from kogpt2.model.source import local_source

    models = ROOT / "models"
    if args.model:  # read, never built into
        source = Path(args.model)
        if not (source / "config.json").is_file():
            raise SystemExit(f"{source} has no config.json: --model names a transformers directory")
    else:
        source = stand_in_at(models / "bench-tiny", tiny=True) if args.quick else stand_in_at()
    cache = models / "bench-cache"
    weights = {"transformers": source}
    for kind in engines.PREFERRED:
        def say(stage, fraction=None, name=kind.name):
            print(f"preparing the {name} copy: {stage}", file=sys.stderr)

        weights[kind.name] = prepare.prepare(local_source(str(source)), kind, "int8", cache, say)
    return source, cache, weights


def weight_bytes(model_dir: Path) -> int:
    names = ("openvino_model.bin", "model.bin", "model.safetensors", "pytorch_model.bin")
    return next((model_dir / n).stat().st_size for n in names if (model_dir / n).is_file())


def table(rows: list[dict], bandwidth_gbs: float) -> str:
    lines = [
        "| contender | threads | compute | first answer s | × | warm default request ms | × "
        "| new tokens | ms/token | × bound | 4 concurrent tokens/s | × | peak RSS MB "
        "| load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = r["base"]  # the original handler at the same thread count
        bound_ms = weight_bytes(r["weights"]) / (bandwidth_gbs * 1e9) * 1000
        lines.append(
            f"| {r['name']} | {r['threads']} | {r['compute_type']} | {r['cold_s']:.2f} | "
            f"{base['cold_s'] / r['cold_s']:.1f}× | {r['warm_ms']:.0f} | "
            f"{base['warm_ms'] / r['warm_ms']:.1f}× | {r['new_tokens']:.0f} | "
            f"{r['ms_per_token']:.1f} | {r['ms_per_token'] / bound_ms:.1f}× of {bound_ms:.1f} | "
            f"{r['concurrent_tokens_per_s']:.1f} | "
            f"{r['concurrent_tokens_per_s'] / base['concurrent_tokens_per_s']:.1f}× | "
            f"{r['rss_mb']:.0f} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


# The targets for the default engine (issue 9), at each thread count against the original
# handler at the same count: (label, value, goal, whether higher is better).
def verdicts(default: dict, base: dict, ttft_ms: float) -> list[str]:
    per_token_goal = 12.0 if default["threads"] == 1 else 8.5
    checks = [
        ("warm default request ≥ 4.5× faster", base["warm_ms"] / default["warm_ms"], 4.5, True),
        ("first answer (second start, model prepared) ≥ 4× faster",
         base["cold_s"] / default["cold_s"], 4.0, True),
        (f"ms/token ≤ {per_token_goal:g}", default["ms_per_token"], per_token_goal, False),
        ("peak RSS ≤ 450 MB", default["rss_mb"], 450, False),
        ("time to first token of a stream, warm, < 100 ms", ttft_ms, 100, False),
    ]
    lines = []
    for label, value, goal, higher in checks:
        met = value >= goal if higher else value <= goal
        lines.append(f"- {default['threads']} thread(s), {label}: {value:.1f} → "
                     f"{'met' if met else 'MISSED'}")
    return lines


def main(argv=None) -> int:
    from kogpt2.model import engines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="transformers stand-in or model directory "
                        "(default: models/kogpt2-stand-in, built if missing)")
    parser.add_argument("--reps", type=int, default=5, help="warm requests per contender")
    parser.add_argument("--threads", default="1,2", help="thread counts to run each at")
    parser.add_argument("--quick", action="store_true",
                        help="tiny stand-in and 2 warm requests: checks the bench, not speed")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else max(args.reps, 5)
    thread_counts = [int(n) for n in args.threads.split(",")]
    source, cache, weights = prepare_models(args)
    default = engines.PREFERRED[0].name

    bandwidth, how = measure_bandwidth_gbs()
    print(f"read bandwidth: {bandwidth:.1f} GB/s ({how})", file=sys.stderr)
    contenders = []  # (name, threads, engine or None for the original handler, start)
    for threads in thread_counts:
        contenders.append(("original handler (transformers fp32, no HTTP)", threads, None,
                           lambda t=threads: OriginalHandler(source, t)))
        for kind in [engines.TRANSFORMERS, *reversed(engines.PREFERRED)]:
            label = {"transformers": "app, transformers fp32 (reference)"}.get(
                kind.name, f"app, {kind.name} int8")
            if kind.name == default:
                label = f"**{label} (default)**"
            contenders.append((label, threads, kind.name,
                               lambda t=threads, k=kind.name: App(source, k, t, cache)))
    # Each starts alone (the others idle); warm requests then take turns, so that other work
    # on the machine slows every contender alike rather than whichever ran at the time.
    running, ttft = [], {}
    try:
        for name, threads, _, start in contenders:
            print(f"starting {name}, {threads} thread(s) ...", file=sys.stderr)
            running.append(start())
        warm = [[] for _ in running]
        for rep in range(reps):
            print(f"warm round {rep + 1} of {reps} ...", file=sys.stderr)
            for times, contender in zip(warm, running, strict=True):
                settle()
                times.append(contender.request())
        for (_, threads, engine, _), contender in zip(contenders, running, strict=True):
            if engine == default:
                print(f"time to first token, {threads} thread(s) ...", file=sys.stderr)
                settle()
                ttft[threads] = time_to_first_token_ms(contender.base, reps)
        rows, bases = [], {}
        for (name, threads, engine, _), contender, times in zip(contenders, running, warm,
                                                               strict=True):
            print(f"{CONCURRENT} concurrent requests to {name}, {threads} thread(s) ...",
                  file=sys.stderr)
            settle()
            concurrent = contender.concurrent()
            load = os.getloadavg()[0]  # others' work on the CPUs slows every figure
            result = summarise(contender.cold_s, times, concurrent, *contender.stop())
            if engine is None:
                bases[threads] = result
            rows.append(dict(result, name=name, threads=threads, engine=engine, load=load,
                             base=bases[threads], weights=weights[engine or "transformers"]))
    finally:
        for contender in running:
            if contender.process.poll() is None:
                contender.process.kill()

    cpus = len(os.sched_getaffinity(0))
    report = "\n".join([
        f"Model: {source} ({'tiny' if args.quick else 'full-size'}), default request "
        f"`{{\"text\": \"{TITLE}\"}}` (greedy, repetition penalty 2.0, 90 tokens in all), "
        f"{cpus} CPUs ({platform.processor() or platform.machine()}), read bandwidth "
        f"{bandwidth:.1f} GB/s ({how}).",
        f"Warm figures are medians of {reps}; \"×\" columns compare with the original handler "
        "at the same thread count; \"× bound\" is ms/token over the time to read the weight "
        "file once at that bandwidth. The apps start on the transformers stand-in with each "
        "engine's copy already prepared in the cache (a second start). Finish reasons: "
        + "; ".join(f"{r['name'].strip('*')} ×{r['threads']}: {', '.join(r['finish_reasons'])}"
                    for r in rows)
        + f". \"load\" is the 1-minute load average after each one's concurrent requests: "
        f"above {cpus}, other work shared the CPUs. Warm requests take turns between the "
        "contenders, so such work slows them alike.",
        "",
        table(rows, bandwidth),
        "",
        "Time to the first token of a stream, default engine, warm, through HTTP (median of "
        f"{reps}): " + ", ".join(f"{ms:.0f} ms at {t} thread(s)" for t, ms in ttft.items()) + ".",
        "",
        f"Targets for the default engine ({default} int8 through the app)"
        + (" — the tiny model says nothing about them:" if args.quick else ":"),
        *[line for r in rows if r["engine"] == default
          for line in verdicts(r, r["base"], ttft[r["threads"]])],
    ])
    print(report)
    out = ROOT / "artifacts" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    print(f"\n(written to {out.relative_to(ROOT)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
