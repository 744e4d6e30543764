#!/usr/bin/env python3
"""Many at once: the service under gunicorn on 127.0.0.1, at 1, 2, 4, 8 and 16 concurrent clients.

Each client streams /v1/completions, one request after another: a title of its own, greedy, 64
new tokens (`ignore_eos`), usage in the last chunk. Per level: output tokens/s, time to first
token and inter-token latency (p50 / p95 over requests; a request's ITL is its (last token -
first token) / (tokens - 1), as guidellm counts it), peak RSS of the worker, and how many
answers are the text the same title gets alone (int8 computes a row a little differently
beside others). The same run repeats a level with requests taking turns
(KOGPT2_MAX_CONCURRENCY=1, the engine's behaviour before continuous batching), for the ratio.

    python bench/serving.py                       # full-size stand-in, 2 threads
    python bench/serving.py --levels 1,8 --env KOGPT2_MAX_BATCH_ROWS=8

It writes a table (Markdown) to stdout, JSON to artifacts/serving.json and a plot to
artifacts/serving.png. `--driver guidellm` sends the same levels through guidellm, the serving
benchmark (synthetic 8-token prompts, its own figures; artifacts/serving-guidellm.*): it runs on
the same two cores as the server, so its figures are the more pessimistic.
"""

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from local_server import LocalServer  # noqa: E402

# Titles of different lengths, so rows of a batch differ as real requests do.
TITLES = [
    "근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "바다가 보이는 작은 마을에서",
    "인공지능이 바꾸는 미래의 직업", "김치찌개를 맛있게 끓이는 방법", "가을", "우리 동네 도서관",
    "겨울 산행을 준비할 때 꼭 챙겨야 할 것들", "첫 출근 날", "한국의 전통 음악",
    "기차 여행의 즐거움", "아이들과 함께하는 주말", "건강한 식습관", "밤하늘의 별을 보며",
    "새로운 언어를 배우는 일", "고양이와 함께 사는 법",
]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else None


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def peak_rss(pid: int):
    """Samples the worker's RSS while the block runs; yields a list whose one item is the
    peak in MB, once the block ends."""
    stop, peak = threading.Event(), [0.0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()


def stream(base: str, title: str, max_tokens: int, model: str, ignore_eos: bool = True) -> dict:
    """One streamed completion: its text, token count and the times of its chunks."""
    url = urlsplit(base)
    body = json.dumps({
        "model": model, "prompt": title, "max_tokens": max_tokens, "temperature": 0,
        "repetition_penalty": 2.0, "stream": True, "stream_options": {"include_usage": True},
        **({"ignore_eos": True} if ignore_eos else {}),
    })
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.monotonic()
    connection.request("POST", url.path + "/v1/completions", body,
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        if response.status != 503:
            print(f"  {response.status}: {response.read()[:200]!r}", file=sys.stderr)
        return {"status": response.status}
    text, times, tokens = [], [], None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("choices"):
            times.append(time.monotonic())
            text.append(event["choices"][0]["text"])
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    connection.close()
    ttft = times[0] - started
    itl = (times[-1] - times[0]) / (tokens - 1) if tokens and tokens > 1 else None
    return {"status": 200, "text": "".join(text), "tokens": tokens, "ttft": ttft, "itl": itl}


def level(base: str, model: str, clients: int, per_client: int, max_tokens: int, pid: int,
          alone: dict[str, str] | None, ignore_eos: bool = True) -> dict:
    results: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for j in range(per_client):
            title = TITLES[(k * per_client + j) % len(TITLES)]
            outcome = stream(base, title, max_tokens, model, ignore_eos)
            with lock:
                results.append((title, outcome))

    with peak_rss(pid) as peak:
        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    ok = [outcome for _, outcome in results if outcome["status"] == 200]
    ttft = [o["ttft"] * 1000 for o in ok]
    itl = [o["itl"] * 1000 for o in ok if o["itl"] is not None]
    same = None
    if alone is not None:
        same = sum(1 for title, o in results if o["status"] == 200 and o["text"] == alone[title])
    return {
        "clients": clients, "requests": len(results), "ok": len(ok),
        "tokens_per_s": sum(o["tokens"] for o in ok) / wall,
        "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p95_ms": percentile(ttft, 0.95),
        "itl_p50_ms": percentile(itl, 0.5), "itl_p95_ms": percentile(itl, 0.95),
        "peak_rss_mb": peak[0], "same_as_alone": same,
        "texts": {title: o["text"] for title, o in results if o["status"] == 200},
    }


def guidellm_level(base: str, clients: int, requests: int, max_tokens: int, pid: int,
                   tokenizer_dir: str) -> dict:
    """One level driven by guidellm (`--driver guidellm`): its concurrent profile, synthetic
    8-token prompts, `ignore_eos` and usage on every chunk, as it sends them; its own figures.
    It runs on the same CPUs as the server, and costs them more than the stdlib driver."""
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "guidellm.json"
        with peak_rss(pid) as peak:
            subprocess.run(
                [str(Path(sys.executable).with_name("guidellm")), "run",
                 "--backend", f"kind=openai_http,target={base},request_format=/v1/completions",
                 "--profile", f"kind=concurrent,streams={clients}",
                 "--constraint", f"kind=max_requests,count={requests}",
                 "--data", f"kind=synthetic_text,prompt_tokens=8,output_tokens={max_tokens}",
                 "--tokenizer", f"kind=hf_auto,model={tokenizer_dir}",
                 "--output", f"kind=json,path={report}", "--disable-console-interactive"],
                cwd=work, check=True, capture_output=True, timeout=900,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(Path(work) / "hf")},
            )
        (benchmark,) = json.loads(report.read_text())["benchmarks"]
    metrics = benchmark["metrics"]

    def percentiles(name):
        return metrics[name]["successful"]["percentiles"]

    ok = len(benchmark["requests"]["successful"])
    return {
        "clients": clients, "requests": ok + len(benchmark["requests"]["errored"]), "ok": ok,
        "tokens_per_s": metrics["output_token_count"]["successful"]["total_sum"]
        / benchmark["duration"],
        "ttft_p50_ms": percentiles("time_to_first_token_ms")["p50"],
        "ttft_p95_ms": percentiles("time_to_first_token_ms")["p95"],
        "itl_p50_ms": percentiles("inter_token_latency_ms")["p50"],
        "itl_p95_ms": percentiles("inter_token_latency_ms")["p95"],
        "peak_rss_mb": peak[0], "same_as_alone": None, "texts": {},
    }


def serve(model: str, threads: int, env: dict[str, str]) -> LocalServer:
    environment = {"KOGPT2_MODEL": model, "KOGPT2_THREADS": str(threads),
                   "KOGPT2_CACHE_DIR": str(ROOT / "models" / "bench-cache"), **env}
    return LocalServer(environment, "--threads", "40", quiet=True, ready_s=600).start()


def run(args, env: dict[str, str], levels: list[int], alone: dict | None) -> list[dict]:
    server = serve(args.model, args.threads, env)
    try:
        [pid] = server.worker_pids()
        with urllib.request.urlopen(f"{server.base}/v1/models", timeout=600) as response:
            model = json.load(response)["data"][0]["id"]
        until = time.monotonic() + 900  # a first run prepares the model: 503 until it is ready
        while stream(server.base, TITLES[0], 4, model, not args.no_ignore_eos)["status"] != 200:
            assert time.monotonic() < until, "the model never became ready"
            time.sleep(2)
        rows = []
        for clients in levels:
            per_client = max(2, args.requests // clients)
            if args.driver == "guidellm":
                row = guidellm_level(server.base, clients, per_client * clients,
                                     args.max_new_tokens, pid, args.model)
            else:
                row = level(server.base, model, clients, per_client, args.max_new_tokens, pid,
                            alone, not args.no_ignore_eos)
            rows.append(row)
            if alone is None and clients == 1:
                alone = row["texts"]
            print(f"  {clients} at once: {row['tokens_per_s']:.0f} tokens/s", file=sys.stderr)
        return rows
    finally:
        server.stop()


def table(rows: list[dict], base: float) -> str:
    lines = ["| requests at once | mode | output tokens/s | × one at a time | TTFT p50 / p95 ms "
             "| ITL p50 / p95 ms | peak RSS MB | same text as alone |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        same = f"{row['same_as_alone']}/{row['ok']}" if row["same_as_alone"] is not None else "–"
        lines.append(
            f"| {row['clients']} | {row['mode']} | {row['tokens_per_s']:.0f} "
            f"| {row['tokens_per_s'] / base:.2f} "
            f"| {row['ttft_p50_ms']:.0f} / {row['ttft_p95_ms']:.0f} "
            f"| {row['itl_p50_ms']:.1f} / {row['itl_p95_ms']:.1f} | {row['peak_rss_mb']:.0f} "
            f"| {same} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("batched", "o"), ("turns", "s")):
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        x = [r["clients"] for r in mine]
        left.plot(x, [r["tokens_per_s"] for r in mine], marker=marker, label=mode)
        right.plot(x, [r["itl_p50_ms"] for r in mine], marker=marker, label=f"{mode} p50")
        right.plot(x, [r["itl_p95_ms"] for r in mine], marker=marker, linestyle="--",
                   label=f"{mode} p95")
    left.set(xscale="log", xlabel="requests at once", ylabel="output tokens/s",
             title="Throughput")
    right.set(xscale="log", xlabel="requests at once", ylabel="ms", title="Inter-token latency")
    for axis in (left, right):
        axis.set_xticks([1, 2, 4, 8, 16], labels=["1", "2", "4", "8", "16"])
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="what KOGPT2_MODEL names (default: the full-size "
                        "stand-in, built on first use)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--requests", type=int, default=32, help="per level, at least 2 a client")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--turns-at", type=int, default=8,
                        help="the level also run with requests taking turns (0: none)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--driver", choices=["stdlib", "guidellm"], default="stdlib",
                        help="who sends the requests: threads of this script (the lightest "
                        "client), or guidellm, the serving benchmark (heavier on shared CPUs)")
    parser.add_argument("--no-ignore-eos", action="store_true",
                        help="for a server without vLLM's ignore_eos (an older checkout)")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    levels = [int(n) for n in args.levels.split(",")]
    if args.model is None:  # a model given is served as it is (a prepared copy, a hub id)
        from make_stand_in import stand_in_at

        args.model = str(stand_in_at())

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    print("continuous batching (default settings):", file=sys.stderr)
    rows = [{**row, "mode": "batched"} for row in run(args, env, levels, None)]
    alone = rows[0]["texts"] if levels[0] == 1 else None
    if args.turns_at:
        print("requests taking turns (KOGPT2_MAX_CONCURRENCY=1):", file=sys.stderr)
        turns = run(args, {**env, "KOGPT2_MAX_CONCURRENCY": "1"}, [1, args.turns_at], alone)
        rows += [{**row, "mode": "turns"} for row in turns]
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    base = rows[0]["tokens_per_s"]
    print(table(rows, base))
    print(f"\n{args.driver} driver, {args.threads} threads, {args.max_new_tokens} new tokens a "
          "request, greedy; "
          f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    name = "serving" if args.driver == "stdlib" else f"serving-{args.driver}"
    (out / f"{name}.json").write_text(json.dumps(
        [{k: v for k, v in row.items() if k != "texts"} for row in rows], indent=1))
    plot(rows, out / f"{name}.png")
    print(f"plot: {out / f'{name}.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
