#!/usr/bin/env python3
"""Measure the service under gunicorn on 127.0.0.1: latency, throughput, 429s, /health, RSS.

The numbers behind gunicorn.conf.py and KOGPT2_MAX_CONCURRENCY's default:

    python bench/serving.py --model /tmp/kogpt2-full --clients 4 --requests 3 \\
        --max-new-tokens 20 --workers 1 --threads 8 --env KOGPT2_MAX_CONCURRENCY=2
"""

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from local_server import LocalServer  # noqa: E402

TITLE = "근육이 커지기 위해서는"


def call(url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="per client")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()

    env = {"KOGPT2_MODEL": args.model, "KOGPT2_ENGINE": "transformers"}
    env.update(item.split("=", 1) for item in args.env)
    server = LocalServer(env, "--workers", str(args.workers), "--threads", str(args.threads),
                         quiet=True).start()
    base = server.base
    try:
        body = {"text": TITLE, "max_new_tokens": args.max_new_tokens, "repetition_penalty": 1.0}
        started = time.monotonic()
        call(f"{base}/generate", {"text": TITLE, "max_new_tokens": 1})  # warm every worker...
        for _ in range(args.workers - 1):
            call(f"{base}/generate", {"text": TITLE, "max_new_tokens": 1})
        warm_s = time.monotonic() - started

        health, stop = [], threading.Event()

        def probe_health():
            while not stop.is_set():
                health.append(call(f"{base}/health", timeout=30)[1])
                time.sleep(0.2)

        prober = threading.Thread(target=probe_health)
        prober.start()
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda _: call(f"{base}/generate", body, timeout=60),
                                    range(args.clients * args.requests)))
        elapsed = time.monotonic() - started
        stop.set()
        prober.join()
        ok = [t for s, t in results if s == 200]
        print(json.dumps({
            "workers": args.workers, "threads": args.threads, "env": args.env,
            "clients": args.clients, "requests": len(results),
            "statuses": {str(s): sum(1 for r, _ in results if r == s) for s, _ in results},
            "first_answer_s": round(warm_s, 2),
            "p50_s": round(statistics.median(ok), 2) if ok else None,
            "p95_s": round(percentile(ok, 0.95), 2) if ok else None,
            "ok_per_s": round(len(ok) / elapsed, 2),
            "health_max_ms": round(max(health) * 1000, 1) if health else None,
            "worker_rss_mb": [round(rss_mb(pid)) for pid in server.worker_pids()],
        }))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
