"""A Lambda task root laid out like the image, and API Gateway REST (v1 proxy) events for it.

`invoke(task_root, events, env, tmp_path)` runs Zappa's real `lambda_handler` in a fresh
process (one warm container: the events go through it in order) and returns its responses.
`WarmLambda` keeps such a process running and takes one event at a time; `ApiGateway` is an
httpx transport that sends each HTTP request through it as an API Gateway event, so an HTTP
client (the openai SDK) calls the handler as it would call the deployed API.

With `runtime=STREAMING` (or `StreamingLambda` for `WarmLambda`) the events go instead through
the image's own runtime, its ENTRYPOINT + CMD read from the Dockerfile, against a fake Runtime
API (fake_runtime_api.py); a streamed answer comes back as API Gateway would hand it on: the
prelude's status and headers, the body whole.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx2 as httpx
from fake_runtime_api import Answer, FakeRuntimeApi

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())
API_ID = "abc123defg"
REGION = "ap-northeast-2"
HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
# The two ways the image has run Zappa's handler: awslambdaric (the base image's runtime, as
# RUNTIME below plays it) and the image's own, which streams API Gateway's answers.
BUFFERED, STREAMING = "awslambdaric", "lambda_runtime"

# What the Lambda runtime does with the image's CMD: import the handler, call it per event.
RUNTIME = textwrap.dedent("""\
    import importlib, json, sys, types, uuid
    module, _, function = sys.argv[3].rpartition(".")
    lambda_handler = getattr(importlib.import_module(module), function)

    def context():
        return types.SimpleNamespace(
            aws_request_id=str(uuid.uuid4()), function_name="kogpt2-dev",
            memory_limit_in_mb=1769, get_remaining_time_in_millis=lambda: 30000,
        )

    events = json.load(open(sys.argv[1]))
    responses = [lambda_handler(event, context()) for event in events]
    json.dump(responses, open(sys.argv[2], "w"))
""")


# The same runtime, one event at a time: an event per line in, a response per line out (on
# their own pipes: the handler and the app may print).
WARM_RUNTIME = textwrap.dedent("""\
    import importlib, json, os, sys, types, uuid
    events, responses = os.fdopen(int(sys.argv[1])), os.fdopen(int(sys.argv[2]), "w")
    module, _, function = sys.argv[3].rpartition(".")
    lambda_handler = getattr(importlib.import_module(module), function)
    for line in events:
        context = types.SimpleNamespace(
            aws_request_id=str(uuid.uuid4()), function_name="kogpt2-dev",
            memory_limit_in_mb=1769, get_remaining_time_in_millis=lambda: 30000,
        )
        responses.write(json.dumps(lambda_handler(json.loads(line), context)) + "\\n")
        responses.flush()
""")


def make_task_root(root: Path, settings_dir: Path = ROOT) -> Path:
    """What the image's runtime stage copies, and the dev stage's zappa_settings.py."""
    for name in ("app.py", "lambda_runtime.py"):
        shutil.copy2(ROOT / name, root)
    for folder in ("kogpt2", "templates", "static"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    save_python_settings(settings_dir, "dev", root)
    return root


def save_python_settings(source_dir: Path, stage: str, task_root: Path) -> Path:
    """`zappa save-python-settings-file STAGE`, as scripts/deploy.sh runs it before the build."""
    zappa = Path(sys.executable).with_name("zappa")
    output = task_root / "zappa_settings.py"
    subprocess.run(
        [str(zappa), "save-python-settings-file", stage, "-o", str(output)],
        cwd=source_dir, check=True, capture_output=True, text=True,
        env={**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"},
    )
    return output


def invoke(task_root: Path, events: list[dict], env: dict[str, str], tmp_path: Path, *,
           python: str = sys.executable, handler: str = "zappa.handler.lambda_handler",
           runtime: str = BUFFERED):
    """The handler's response to each event, in one process: one warm container."""
    return invoke_logged(task_root, events, env, tmp_path, python=python, handler=handler,
                         runtime=runtime)[0]


def invoke_logged(task_root: Path, events: list[dict], env: dict[str, str], tmp_path: Path, *,
                  python: str = sys.executable, handler: str = "zappa.handler.lambda_handler",
                  runtime: str = BUFFERED):
    """(responses, log): the log is all the process wrote, as CloudWatch gets a function's."""
    if runtime == STREAMING:
        with StreamingLambda(task_root, env, tmp_path, python=python) as function:
            responses = [function.invoke(event) for event in events]
        return responses, function.log()
    events_file, responses_file = tmp_path / "events.json", tmp_path / "responses.json"
    events_file.write_text(json.dumps(events))
    process = subprocess.run(
        [python, "-c", RUNTIME, str(events_file), str(responses_file), handler],
        cwd=task_root, env={**env, "PYTHONPATH": str(task_root)},
        capture_output=True, text=True, timeout=300,
    )
    log = process.stdout + process.stderr
    assert process.returncode == 0, log
    return json.loads(responses_file.read_text()), log


def api_event(method: str, path: str, *, body=None, headers=None, base64_body=False,
              query: dict[str, str] | None = None, stage: str = "dev") -> dict:
    """An API Gateway REST API proxy-integration event, as AWS sends it to the function."""
    headers = {
        "Host": HOST,
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    if isinstance(body, (dict, list)):
        body = json.dumps(body, ensure_ascii=False)
    if body is not None and base64_body:
        body = base64.b64encode(body.encode()).decode()
    resource = "/" if path == "/" else "/{proxy+}"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": (
            {name: [value] for name, value in query.items()} if query else None
        ),
        "pathParameters": None if path == "/" else {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": HOST,
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTimeEpoch": 1764100000000,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        },
        "body": body,
        "isBase64Encoded": base64_body,
    }


def scheduled_event(rule_name: str) -> dict:
    """The EventBridge event of a Zappa `events` schedule; the rule name ends in the function."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-25T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/{rule_name}"],
        "detail": {},
    }


def headers_of(response: dict) -> dict[str, str]:
    """Response headers, lower-cased, whichever of the two shapes Zappa used."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(values)
    return headers


class WarmLambda:
    """One warm container running Zappa's handler: `invoke(event)` returns its response.

        with WarmLambda(task_root, env, tmp_path) as function:
            function.invoke(api_event("GET", "/health"))
    """

    def __init__(self, task_root: Path, env: dict[str, str], tmp_path: Path, *,
                 handler: str = "zappa.handler.lambda_handler"):
        self.task_root, self.env, self.handler = task_root, env, handler
        self.output = tmp_path / "lambda-output.txt"  # the container's stdout and stderr

    def __enter__(self) -> "WarmLambda":
        events_read, self._events = os.pipe()
        self._responses, responses_write = os.pipe()
        with self.output.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WARM_RUNTIME, str(events_read), str(responses_write),
                 self.handler],
                cwd=self.task_root, env={**self.env, "PYTHONPATH": str(self.task_root)},
                stdout=output, stderr=subprocess.STDOUT, pass_fds=(events_read, responses_write),
            )
        os.close(events_read), os.close(responses_write)
        self.events = os.fdopen(self._events, "w")
        self.responses = os.fdopen(self._responses)
        return self

    def invoke(self, event: dict) -> dict:
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()
        line = self.responses.readline()
        assert line, f"the handler's process ended: {self.output.read_text()[-3000:]}"
        return json.loads(line)

    def __exit__(self, *exc_info) -> None:
        self.events.close()
        try:
            self.process.wait(timeout=30)
        finally:
            self.process.kill()
            self.responses.close()


class ApiGateway(httpx.BaseTransport):
    """httpx requests to https://HOST/STAGE/... as API Gateway REST (v1 proxy) events."""

    def __init__(self, function: WarmLambda, stage: str = "dev"):
        self.function, self.stage = function, stage

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == HOST and not request.url.query, request.url
        raw_path = request.url.raw_path.decode()
        assert raw_path.startswith(f"/{self.stage}/"), raw_path
        headers = {name.title(): value for name, value in request.headers.items()}
        body = request.read().decode() or None
        event = api_event(request.method, raw_path.removeprefix(f"/{self.stage}"), body=body,
                          headers=headers, stage=self.stage)
        response = self.function.invoke(event)
        content = response.get("body") or ""
        content = (base64.b64decode(content) if response.get("isBase64Encoded")
                   else content.encode())
        return httpx.Response(response["statusCode"], headers=headers_of(response),
                              content=content, request=request)


def image_command(task_root: Path) -> list[str]:
    """What Lambda starts in the image: its ENTRYPOINT + CMD, /var/task being `task_root`."""
    from lambda_image import LAMBDA_TASK_ROOT, chain, exec_form, stages

    instructions = chain(stages(), "runtime")
    return [word.replace(LAMBDA_TASK_ROOT, str(task_root)) for word in
            exec_form(instructions, "ENTRYPOINT") + exec_form(instructions, "CMD")]


def as_proxy_response(answer: Answer) -> dict:
    """What the runtime answered, in the shape API Gateway reads from a buffered answer: a
    streamed answer's prelude with its body (text), or the handler's own dict. An /error is
    {"runtimeError": its payload}."""
    if answer.path == "error":
        return {"runtimeError": answer.json()}
    if not answer.streamed:
        return answer.json()
    assert answer.path == "response" and not answer.trailers, answer.trailers
    prelude, body = answer.split()
    return {**prelude, "body": body.decode(), "isBase64Encoded": False}


class StreamingLambda:
    """One container of the image's own runtime (ENTRYPOINT + CMD) against a fake Runtime API:
    `invoke(event)` returns what API Gateway would read (as_proxy_response), `answer(event)` the
    raw Answer, `log()` what the process wrote.

        with StreamingLambda(task_root, env, tmp_path) as function:
            function.invoke(api_event("GET", "/health"))
    """

    def __init__(self, task_root: Path, env: dict[str, str], tmp_path: Path, *,
                 python: str = sys.executable, command: list[str] | None = None,
                 deadline_s: float = 30.0):
        self.task_root, self.env, self.python = task_root, env, python
        self.command = command or image_command(task_root)
        self.output = tmp_path / "runtime-output.txt"
        self.api = FakeRuntimeApi(deadline_s=deadline_s)

    def __enter__(self) -> "StreamingLambda":
        self.api.__enter__()
        # `python3` in the ENTRYPOINT is the given python, as /var/lang/bin's is in the image.
        path = os.pathsep.join([str(Path(self.python).parent),
                                self.env.get("PATH", "/usr/bin:/bin")])
        with self.output.open("w") as output:
            self.process = subprocess.Popen(
                self.command, cwd=self.task_root,
                env={**self.env, "PATH": path, "AWS_LAMBDA_RUNTIME_API": self.api.address},
                stdout=output, stderr=subprocess.STDOUT,
            )
        return self

    def answer(self, event: dict, timeout: float = 120) -> Answer:
        answer = self.api.send(event)
        while not answer.done.wait(0.2):
            timeout -= 0.2
            assert self.process.poll() is None, f"the runtime ended: {self.log()[-3000:]}"
            assert timeout > 0, f"no answer: {self.log()[-3000:]}"
        return answer

    def invoke(self, event: dict) -> dict:
        return as_proxy_response(self.answer(event))

    def log(self) -> str:
        return self.output.read_text()

    def __exit__(self, *exc_info) -> None:
        # Lambda freezes a container once its runtime asks for the next event: what it does
        # after an answer (the access line of a stream) happens before.
        deadline = time.monotonic() + 10
        while (self.process.poll() is None and self.api.next_calls <= len(self.api.answers)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.process.kill()
        self.process.wait(timeout=30)
        self.api.__exit__(*exc_info)


def run_image(image, python, tmp_path: Path) -> StreamingLambda:
    """A container of an image laid out by image.lay_out, with the image venv's python."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **image.env}
    return StreamingLambda(image.task_root, env, tmp_path, python=str(python),
                           command=image.command)
