"""Load on 127.0.0.1 against gunicorn (gunicorn.conf.py, tiny stand-in), bounded in count and time.

Figures go to stdout (pytest -s) and artifacts/load-test.json.
"""

import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TITLE = "근육이 커지기 위해서는"
BUDGET_S = 10
HANG_S = 300  # a client gives up only on a server that hangs: how long answers take is a figure
BODY = {"text": TITLE, "max_new_tokens": 8, "repetition_penalty": 1.0}


def call(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=HANG_S) as response:
            status, headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, payload = exc.code, exc.headers, exc.read()
    return status, time.monotonic() - started, headers, json.loads(payload)


def worker_pid(base_url: str) -> int:
    """The gunicorn worker serving `base_url`: the child whose parent runs the same command."""
    bind = urlsplit(base_url).netloc
    servers = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"gunicorn" in b" ".join(cmdline) and bind.encode() in cmdline:
            servers[int(proc.name)] = ppid
    (worker,) = [pid for pid, ppid in servers.items() if ppid in servers]
    return worker


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def figures(name, results, elapsed_s, **extra):
    statuses = [status for status, *_ in results]
    latencies = [seconds for _, seconds, *_ in results]
    summary = {
        "test": name,
        "requests": len(results),
        "ok_200": statuses.count(200),
        "overloaded_429": statuses.count(429),
        "errors": len(results) - statuses.count(200) - statuses.count(429),
        "p50_ms": round(statistics.median(latencies) * 1000),
        "p95_ms": round(percentile(latencies, 0.95) * 1000),
        "max_ms": round(max(latencies) * 1000),
        "elapsed_s": round(elapsed_s, 1),
        **extra,
    }
    print("\nLOAD " + json.dumps(summary))
    out = ROOT / "artifacts" / "load-test.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, name: summary}, indent=2) + "\n")
    return summary


def assert_documented(results):
    """Every answer is a text or a 429 (how long they took is in the figures, not asserted:
    speed lives in bench/)."""
    for status, _seconds, headers, body in results:
        assert status in (200, 429), body
        if status == 429:
            assert body["error_type"] == "overloaded" and int(headers["Retry-After"]) >= 1
        else:
            assert body["generated_text"].startswith(TITLE)


def burst(base, clients=64):
    """`clients` requests at the same instant, one per thread."""
    barrier = threading.Barrier(clients)

    def client(_):
        barrier.wait()
        return call(f"{base}/generate", BODY)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    return results, time.monotonic() - started


def test_64_clients_on_a_cold_server_load_the_model_once(live_server):
    # Cold: the model loads on the first request, not as the worker starts.
    with live_server(time_budget_s=BUDGET_S, load_on_start="false") as base:
        assert json.load(urllib.request.urlopen(f"{base}/info", timeout=HANG_S))["loaded"] is False
        cold, cold_s = burst(base)
        warm, warm_s = burst(base)  # the same burst once loaded, for comparison
        info = json.load(urllib.request.urlopen(f"{base}/info", timeout=HANG_S))
        rss = round(rss_mb(worker_pid(base)))
    cold_figures = figures("cold_64_clients", cold, cold_s, worker_rss_mb=rss)
    figures("warm_64_clients", warm, warm_s, worker_rss_mb=rss)
    assert_documented(cold + warm)
    assert info["load_count"] == 1
    assert cold_figures["ok_200"] >= 1
    assert info["concurrency"]["running"] == info["concurrency"]["waiting"] == 0


def test_memory_stays_flat_over_500_requests(live_server):
    # Waiting up to 25 s for the slot: 4 clients fit 1 slot + 8 queued, however slow the CPU.
    with live_server(time_budget_s=BUDGET_S, queue_timeout_s=25) as base:
        pid = worker_pid(base)
        call(f"{base}/generate", BODY)  # the model is loaded (the fixture waits): warm it
        samples, peak, health_s, done = [], [rss_mb(pid)], [], threading.Event()

        def sample_peak_and_health():
            while not done.wait(0.05):
                peak.append(rss_mb(pid))
                started = time.monotonic()
                urllib.request.urlopen(f"{base}/health", timeout=HANG_S).close()
                health_s.append(time.monotonic() - started)

        def client(i):
            result = call(f"{base}/generate", {**BODY, "do_sample": True, "seed": i})
            if i % 50 == 49:
                samples.append(rss_mb(pid))
            return result

        sampler = threading.Thread(target=sample_peak_and_health)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(client, range(500)))
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
    summary = figures("500_requests_4_clients", results, elapsed,
                      rss_samples_mb=[round(s) for s in samples], peak_rss_mb=round(max(peak)),
                      health_checks=len(health_s), health_max_ms=round(max(health_s) * 1000))
    assert_documented(results)
    assert len(health_s) > 0  # /health answered throughout (its times are in the figures)
    assert summary["ok_200"] == 500  # 4 clients never fill 1 slot + a queue of 8
    growth = samples[-1] - samples[1]  # after warm-up: allocator pools, tokenizer caches
    assert growth < 30, f"worker RSS grew {growth:.0f} MB over 400 requests: {samples}"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.fixture(scope="module")
def full_size_ov_dir(full_size_model_dir, tmp_path_factory):
    """The full-size stand-in prepared for OpenVINO int8, as an image bakes it in: a server
    that prepared it itself would have held torch and the float32 model in memory first."""
    from convert import convert

    return convert(str(full_size_model_dir), tmp_path_factory.mktemp("full-ov") / "int8")


def test_a_scoring_batch_takes_little_memory_and_holds_no_other_row_past_its_deadline(
        live_server, full_size_ov_dir):
    """lm-eval's loglikelihood shape (issue 23, 1): a 7 KB /v1 request scoring one 1,024-id
    prompt and 19 one-id prompts (echo, logprobs 0, max_tokens 0) on the full-size stand-in,
    int8. Before, every row's logits at every position of the widest came back (20 x 1,024 x
    51,200 floats: 4.2 GB), and all 20 rows read 1,024 positions in one call that held every
    other row; now only the scored positions' logits come back, a step at a time, and a
    generation sent meanwhile writes beside it within its time budget."""
    with live_server(model=full_size_ov_dir, engine="openvino", time_budget_s=BUDGET_S,
                     max_batch_rows=20) as base:
        pid = worker_pid(base)
        model = call(f"{base}/v1/models")[3]["data"][0]["id"]
        assert call(f"{base}/generate", BODY)[0] == 200  # warm
        scoring = {"model": model, "prompt": [list(range(1000, 2024))] + [[i] for i in
                                                                        range(500, 519)],
                   "echo": True, "logprobs": 0, "max_tokens": 0}
        assert len(json.dumps(scoring)) < 7200
        answers = []
        sent = threading.Thread(target=lambda: answers.append(
            call(f"{base}/v1/completions", scoring)))
        sent.start()
        until = time.monotonic() + 30
        while call(f"{base}/info")[3]["batch"]["rows_running"] == 0:
            assert time.monotonic() < until, "the scoring batch never started"
            time.sleep(0.01)
        other = call(f"{base}/generate", {**BODY, "max_new_tokens": 48})
        sent.join(HANG_S)
        peak = peak_rss_mb(pid)
    print(f"\nSCORING peak_rss_mb={peak:.0f} scoring_s={answers[0][1]:.1f} "
          f"other_s={other[1]:.1f}")
    status, _, _, body = other
    assert status == 200 and body["details"]["finish_reason"] == "length", body
    assert body["details"]["generated_tokens"] == 48
    status, _, _, scored = answers[0]
    assert status == 200, scored
    logprobs = [choice["logprobs"]["token_logprobs"] for choice in scored["choices"]]
    assert [len(values) for values in logprobs] == [1024] + [1] * 19
    assert logprobs[0][0] is None and None not in logprobs[0][1:]
    assert peak <= 600, f"the worker peaked at {peak:.0f} MB"
