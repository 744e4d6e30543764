#!/usr/bin/env python3
"""What the image's own Lambda runtime adds to a cold start, against the runtime it replaced.

Both run Zappa's handler in a fresh process of PYTHON against the same fake Runtime API on
127.0.0.1 (tests/fake_runtime_api.py), on the same task root and MODEL_DIR, turn about:
- awslambdaric: `python -m awslambdaric zappa.handler.lambda_handler`, the base image's runtime
  (its PyPI release), which the image ran until it had its own;
- lambda_runtime: the image's ENTRYPOINT + CMD (lambda_runtime.py), as the image runs it now.

For each: init (process start to its first /invocation/next: imports, Zappa's settings, the
app), the first request (GET /health, from that /next to its answer), then the first generation
(POST /generate streamed, the default 90 tokens, the model loaded on the way): time to its
first byte at the Runtime API and to its end, and the process's peak RSS.

    python -m venv /tmp/image
    /tmp/image/bin/pip install -r requirements-lambda.txt awslambdaric==4.2.2
    python scripts/convert.py models/kogpt2-stand-in /tmp/model-int8
    python bench/lambda_runtime_cold_start.py /tmp/image/bin/python /tmp/model-int8 --runs 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fake Runtime API and the event builders

from fake_runtime_api import FakeRuntimeApi  # noqa: E402
from lambda_task import SETTINGS, api_event, image_command, make_task_root  # noqa: E402

RUNTIMES = ["awslambdaric", "lambda_runtime"]


def command(runtime: str, task_root: Path) -> list[str]:
    if runtime == "awslambdaric":
        return ["python3", "-m", "awslambdaric", "zappa.handler.lambda_handler"]
    return image_command(task_root)


def cold_start(runtime: str, python: str, task_root: Path, model_dir: str) -> dict:
    env = {
        **SETTINGS["dev"]["aws_environment_variables"],
        "KOGPT2_MODEL": model_dir, "HF_HUB_OFFLINE": "1", "HOME": "/tmp",
        "INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT": "1",
        "PATH": f"{Path(python).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(task_root),  # awslambdaric finds the handler on it (/var/task)
    }
    with FakeRuntimeApi() as api:
        started = time.monotonic()
        process = subprocess.Popen(command(runtime, task_root), cwd=task_root,
                                   env={**env, "AWS_LAMBDA_RUNTIME_API": api.address},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            health = api.invoke(api_event("GET", "/health"))
            init_s = api.next_at[0] - started
            generate = api.invoke(api_event(
                "POST", "/generate", headers={"Content-Type": "application/json"},
                body={"text": "근육이 커지기 위해서는", "stream": True}))
            status = dict(line.split(":", 1)
                          for line in Path(f"/proc/{process.pid}/status").read_text().splitlines())
        finally:
            process.kill()
            process.wait()
    # Buffered, the whole answer is its first byte.
    first_byte = generate.chunks[0][0] if generate.chunks else generate.done_at
    # /health was queued before the process started: it was served from the first /next on.
    return {"init_s": init_s, "health_s": health.done_at - api.next_at[0],
            "first_byte_s": first_byte - generate.sent_at,
            "whole_s": generate.done_at - generate.sent_at,
            "streamed": generate.streamed,
            "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("python", help="a venv of requirements-lambda.txt and awslambdaric")
    parser.add_argument("model_dir")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model_dir = str(Path(args.model_dir).resolve())
    results = {runtime: [] for runtime in RUNTIMES}
    with tempfile.TemporaryDirectory() as tmp:
        task_root = make_task_root(Path(tmp))
        for _ in range(args.runs):
            for runtime in RUNTIMES:  # turn about: the machine's drift hits both alike
                results[runtime].append(cold_start(runtime, args.python, task_root, model_dir))

    print(f"{args.runs} cold starts each; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min); "
          f"{os.cpu_count()} CPUs; model {Path(model_dir).name}")
    print("| runtime | init | first request (/health) | first /generate (model load): first "
          "byte | whole | peak RSS |")
    print("|---|---|---|---|---|---|")
    for runtime, runs in results.items():
        def cell(key, unit="s", scale=1000, runs=runs):
            values = sorted(run[key] for run in runs)
            if unit == "MB":
                return f"{statistics.median(values):.0f} MB"
            return (f"{statistics.median(values) * scale:.0f} ms "
                    f"({values[0] * scale:.0f}–{values[-1] * scale:.0f})")
        streamed = "streamed" if all(run["streamed"] for run in runs) else "buffered"
        print(f"| {runtime} ({streamed}) | {cell('init_s')} | {cell('health_s')} | "
              f"{cell('first_byte_s')} | {cell('whole_s')} | {cell('peak_rss_mb', 'MB')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
