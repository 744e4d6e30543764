"""Lambda's Runtime API on 127.0.0.1, written from AWS's documentation ("Using the Lambda
runtime API for custom runtimes", "Custom runtime: response streaming"), for a runtime process
to run against.

    with FakeRuntimeApi() as api:
        process = subprocess.Popen([...], env={"AWS_LAMBDA_RUNTIME_API": api.address, ...})
        answer = api.invoke(event)       # queued for /invocation/next; waits for the answer

An answer records how it came: on /response (buffered, or streamed in HTTP/1.1 chunks whose
framing is parsed here, each chunk with the time it arrived, and the trailers) or on /error;
/init/error is recorded apart. Nothing here knows the runtime under test.
"""

import base64
import json
import queue
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:ap-northeast-2:123456789012:function:kogpt2-dev"
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8


class Answer:
    """What the runtime sent back for one invocation."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.path = None  # "response" or "error"
        self.headers = {}
        self.chunks: list[tuple[float, bytes]] = []  # (arrival, bytes) per HTTP chunk
        self.trailers: dict[str, str] = {}
        self.body = b""
        self.pieces: queue.Queue = queue.Queue()  # the body's bytes as they come; None: the end
        self.done = threading.Event()
        self.sent_at = self.done_at = None  # time.monotonic()

    @property
    def streamed(self) -> bool:
        return self.headers.get("lambda-runtime-function-response-mode") == "streaming"

    def json(self):
        return json.loads(self.body)

    def split(self) -> tuple[dict, bytes]:
        """A streamed HTTP integration answer: (its prelude, the body after the 8 NULs)."""
        assert self.headers["content-type"] == PRELUDE_TYPE, self.headers
        prelude, delimiter, body = self.body.partition(DELIMITER)
        assert delimiter == DELIMITER, self.body[:200]
        return json.loads(prelude), body

    def error_body(self) -> dict:
        """A failure after the stream began: the trailers' error body, decoded."""
        return json.loads(base64.b64decode(self.trailers["lambda-runtime-function-error-body"]))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A runtime killed at the end of a test drops its connection: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeRuntimeApi:
    def __init__(self, *, deadline_s: float = 30.0):
        self.deadline_s = deadline_s
        self.events: queue.Queue = queue.Queue()
        self.answers: dict[str, Answer] = {}
        self.init_errors: list[dict] = []
        self.init_error_seen = threading.Event()
        self.next_calls = 0
        self.next_at: list[float] = []  # when each /invocation/next came (time.monotonic)
        self.server = Server(("127.0.0.1", 0), self._handler())
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeRuntimeApi":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def send(self, event) -> Answer:
        """Queue an event for /invocation/next; its answer fills in when it comes."""
        answer = Answer(str(uuid.uuid4()))
        answer.sent_at = time.monotonic()
        self.answers[answer.request_id] = answer
        self.events.put((answer, json.dumps(event).encode()))
        return answer

    def invoke(self, event, timeout: float = 120) -> Answer:
        answer = self.send(event)
        assert answer.done.wait(timeout), f"no answer to {event!r:.200} in {timeout} s"
        return answer

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                assert self.path == f"{API}/invocation/next", self.path
                api.next_calls += 1
                api.next_at.append(time.monotonic())
                answer, body = api.events.get()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", answer.request_id)
                deadline = int((time.time() + api.deadline_s) * 1000)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5e1b4151-43a0913a12345678")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                headers = {name.lower(): value for name, value in self.headers.items()}
                if self.path == f"{API}/init/error":
                    api.init_errors.append({"headers": headers, "body": json.loads(self.read())})
                    self.accepted()
                    api.init_error_seen.set()
                    return
                match = re.fullmatch(rf"{API}/invocation/([^/]+)/(response|error)", self.path)
                assert match, self.path
                answer = api.answers[match[1]]
                answer.path, answer.headers = match[2], headers
                if headers.get("transfer-encoding") == "chunked":
                    self.read_chunks(answer)
                else:
                    answer.body = self.read()
                    answer.pieces.put(answer.body)
                answer.pieces.put(None)
                self.accepted()
                answer.done_at = time.monotonic()
                answer.done.set()

            def read(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def read_chunks(self, answer: Answer) -> None:
                """RFC 9112 7.1: size line, data, CRLF, ...; a 0 size, trailer fields, CRLF."""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        break
                    data = self.rfile.read(size)
                    answer.chunks.append((time.monotonic(), data))
                    answer.pieces.put(data)
                    assert self.rfile.read(2) == b"\r\n"
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    answer.trailers[name.strip().lower()] = value.strip()
                answer.body = b"".join(data for _, data in answer.chunks)

            def accepted(self):
                body = b'{"status":"OK"}'
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
