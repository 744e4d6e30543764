#!/usr/bin/env python3
"""What one Lambda container costs: init, model load, request latency and peak memory.

Runs Zappa's real handler, as the image's CMD does, in a fresh process of PYTHON (a venv made
from requirements-lambda.txt is the slim image's runtime) on MODEL_DIR, with the dev stage's
settings, and prints one JSON line per thread count:

    python -m venv /tmp/image && /tmp/image/bin/pip install -r requirements-lambda.txt
    python scripts/convert.py models/kogpt2-stand-in models/stand-in-int8 --quantization int8
    python bench/lambda_footprint.py /tmp/image/bin/python models/stand-in-int8 --threads 1 2

The request is the default one (title 근육이 커지기 위해서는, greedy, 90 tokens in all).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the API Gateway event builders

from lambda_task import api_event, save_python_settings, scheduled_event  # noqa: E402

CONTAINER = r"""
import json, sys, time
started = time.perf_counter()
from zappa.handler import lambda_handler  # INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT: the init phase
init_s = time.perf_counter() - started
events = json.load(open(sys.argv[1]))
started = time.perf_counter()
warm_up = lambda_handler(events[0], None)
load_s = time.perf_counter() - started
latencies, tokens = [], []
for event in events[1:]:
    started = time.perf_counter()
    response = lambda_handler(event, None)
    latencies.append(time.perf_counter() - started)
    tokens.append(json.loads(response["body"])["details"]["generated_tokens"])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("RESULT " + json.dumps({
    "engine": warm_up["engine"], "init_s": round(init_s, 2), "load_s": round(load_s, 2),
    "request_s": [round(s, 2) for s in latencies], "generated_tokens": tokens,
    "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024),
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("python", help="python of a venv made from requirements-lambda.txt")
    parser.add_argument("model_dir")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()

    settings = json.loads((ROOT / "zappa_settings.json").read_text())["dev"]
    with tempfile.TemporaryDirectory() as tmp:
        task_root = Path(tmp) / "task"
        task_root.mkdir()
        shutil.copy2(ROOT / "app.py", task_root)
        shutil.copytree(ROOT / "kogpt2", task_root / "kogpt2")
        save_python_settings(ROOT, "dev", task_root)
        body = {"text": "근육이 커지기 위해서는"}
        events = [scheduled_event("kogpt2-dev-app.warm_up")] + [
            api_event("POST", "/generate", body=body, headers={"Content-Type": "application/json"})
        ] * args.requests
        (task_root / "events.json").write_text(json.dumps(events))
        for threads in args.threads:
            env = {
                **settings["aws_environment_variables"],
                "KOGPT2_MODEL": str(Path(args.model_dir).resolve()),
                "KOGPT2_THREADS": str(threads),
                "HF_HUB_OFFLINE": "1",
                "INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT": "1",
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(task_root),
            }
            process = subprocess.run(
                [args.python, "-c", CONTAINER, "events.json"], cwd=task_root, env=env,
                capture_output=True, text=True, check=True,
            )
            result = next(line for line in process.stdout.splitlines() if line.startswith("RESULT"))
            print(json.dumps({"threads": threads, **json.loads(result.removeprefix("RESULT "))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
