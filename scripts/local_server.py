"""The one way tests and benches run the app: `gunicorn app:app` on a free 127.0.0.1 port.

    with LocalServer({"KOGPT2_MODEL": "models/tiny"}) as server:
        urllib.request.urlopen(f"{server.base}/health")

It reads gunicorn.conf.py, as `make run` does; extra gunicorn arguments and KOGPT2_* settings
come from the caller; `log` collects the server's stderr (the app's JSON log lines).
It is up once /health answers; the model loads in the background from then on (with
KOGPT2_LOAD_ON_START=false, on the first request); `/ready` says when it is ready.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    def __init__(self, env: dict[str, str], *args: str, script_name: str = "",
                 ready_s: float = 60, quiet: bool = False, log: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}{script_name}"
        self.environment = {**os.environ, **env}
        if script_name:
            self.environment["SCRIPT_NAME"] = script_name
        self.command = [sys.executable, "-m", "gunicorn", "app:app",
                        "--bind", f"127.0.0.1:{self.port}", *args]
        self.ready_s, self.quiet, self.log = ready_s, quiet, log
        self.process: subprocess.Popen | None = None

    def start(self) -> "LocalServer":
        stderr = None  # the app's log lines go to stderr: quiet drops them, log keeps them
        if self.quiet:
            stderr = subprocess.DEVNULL
        elif self.log is not None:
            stderr = open(self.log, "ab")  # noqa: SIM115 - the child holds it from here on
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.environment,
                                        stderr=stderr)
        if stderr not in (None, subprocess.DEVNULL):
            stderr.close()
        deadline = time.monotonic() + self.ready_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        found = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def call(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict, dict]:
    """Status, JSON body and headers of a GET (no body) or a JSON POST, errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error), dict(error.headers)
