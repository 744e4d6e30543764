"""API Gateway's part in a STREAM integration, on 127.0.0.1, in front of a fake Runtime API:
each HTTP request under /STAGE becomes a REST API (v1 proxy) event (`lambda_task.api_event`,
its body base64 as `binary_support` has it sent); the function's streamed answer goes back as
an HTTP answer: the prelude's status and headers, then the body in chunks as they arrive.

    with ApiGatewayStream(runtime_api, stage="dev") as gateway:
        page.goto(f"{gateway.url}/dev/")

What AWS does beyond that (limits, throttling, its own errors) is not played, except that a
function failure before the prelude is API Gateway's 502 and a buffered answer (the runtime
and the integration disagreeing) a 500. `disconnects` records when a client went away.
"""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from fake_runtime_api import DELIMITER, FakeRuntimeApi
from lambda_task import HOST, api_event

PLAIN_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "host"}


class ApiGatewayStream:
    def __init__(self, runtime_api: FakeRuntimeApi, stage: str = "dev"):
        self.runtime_api, self.stage = runtime_api, stage
        self.disconnects: list[float] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "ApiGatewayStream":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.relay()

            do_POST = do_OPTIONS = do_HEAD = do_GET

            def relay(self):
                url = urlsplit(self.path)
                prefix = f"/{gateway.stage}"
                if not (url.path == prefix or url.path.startswith(prefix + "/")):
                    return self.plain(403, {"message": "Missing Authentication Token"})
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.title(): value for name, value in self.headers.items()
                           if name.lower() not in PLAIN_HEADERS}
                event = api_event(self.command, url.path.removeprefix(prefix) or "/",
                                  body=base64.b64encode(body).decode() if body else None,
                                  headers={**headers, "Host": HOST}, stage=gateway.stage,
                                  query=dict(parse_qsl(url.query)) or None)
                event["isBase64Encoded"] = bool(body)
                answer = gateway.runtime_api.send(event)
                received = b""
                while DELIMITER not in received:
                    piece = answer.pieces.get(timeout=120)
                    if piece is None:  # a failure before the prelude, or a buffered answer
                        answer.done.wait(10)
                        if answer.path == "error":
                            return self.plain(502, {"message": "Internal server error"})
                        return self.plain(500, {"message": "Internal server error"})
                    received += piece
                prelude, _, rest = received.partition(DELIMITER)
                prelude = json.loads(prelude)
                self.send_response(prelude["statusCode"])
                for name, values in prelude.get("multiValueHeaders", {}).items():
                    for value in values:
                        self.send_header(name, value)
                for cookie in prelude.get("cookies", []):
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    piece = rest
                    while piece is not None:
                        if piece:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                            self.wfile.flush()
                        piece = answer.pieces.get(timeout=120)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    gateway.disconnects.append(time.monotonic())
                    self.close_connection = True

            def plain(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
