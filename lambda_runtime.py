"""The image's Lambda runtime: Zappa's handler, with API Gateway's answers streamed.

The Dockerfile's ENTRYPOINT runs this file with the image's CMD, `zappa.handler.lambda_handler`,
as its argument. No Python runtime streams (awslambdaric, Zappa's handler: both buffer), so this
one speaks Lambda's Runtime API (AWS_LAMBDA_RUNTIME_API) itself, with the standard library:

- Init, once: the CMD's handler is imported, which loads Zappa's settings and the app (as
  awslambdaric did, during Lambda's init phase). A failure goes to /runtime/init/error.
- Then one invocation after another, for the life of the process (GET .../invocation/next):
  - An API Gateway REST (v1 proxy) event, when the stage streams (LAMBDA_RESPONSE_STREAMING,
    on unless "false"): the WSGI request as Zappa's handler builds it (stage prefix, base64
    bodies, headers, source IP), the app's answer streamed on /response: a JSON prelude
    (status, headers, cookies), 8 NUL bytes, then each piece of the body as the app yields it,
    in HTTP/1.1 chunks. A failure before the first byte goes to /error; one after it ends the
    body with the Lambda-Runtime-Function-Error-Type/-Body trailers.
  - Anything else (the scheduled warm-up, `zappa invoke`, `zappa manage`), and every event when
    the stage doesn't stream: the CMD's handler, its result answered whole on /response, as
    Zappa has always been run.

The API Gateway integration must match: STREAM with the response-streaming URI when the stage
streams, BUFFERED otherwise (`scripts/deploy_aws.py apply-streaming` makes it so after every
deploy). A streamed answer to a BUFFERED integration, or a buffered one to STREAM, is a 5xx.
"""

import base64
import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback

API = "/2018-06-01/runtime"
STREAMING = "LAMBDA_RESPONSE_STREAMING"  # the stage's setting (zappa_settings.json)
DELIMITER = b"\0" * 8  # between the prelude and the body
STREAM_HEADERS = {
    "Lambda-Runtime-Function-Response-Mode": "streaming",
    "Transfer-Encoding": "chunked",
    "Content-Type": "application/vnd.awslambda.http-integration-response",
    "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
}
# API Gateway frames the streamed body itself: the app's own framing would contradict it.
FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}

log = logging.getLogger("lambda_runtime")


def response_streaming(environ=os.environ) -> bool:
    """Whether API Gateway events are answered streamed. scripts/deploy_aws.py reads the stage's
    setting with this too, so the runtime and the integration agree on it."""
    value = environ.get(STREAMING, "true").strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{STREAMING}={value!r}: it is 'true' (the default) or 'false'")
    return value == "true"


def is_rest_api_event(event) -> bool:
    """An API Gateway REST API (v1 proxy) event: what the STREAM integration sends."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    return (isinstance(context, dict) and "httpMethod" in event and "elb" not in context
            and event.get("version") != "2.0")


class Invocation:
    """One event from /invocation/next, with what Lambda says about it."""

    def __init__(self, headers, body: bytes):
        self.request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        self.deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        self.function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.trace_id = headers.get("Lambda-Runtime-Trace-Id")
        # Echoed on the answer, so that Lambda can refuse a late answer to an earlier invoke.
        self.invocation_id = headers.get("Lambda-Runtime-Invocation-Id")
        self.event = json.loads(body)

    def answer_headers(self, headers=None) -> dict:
        if self.invocation_id:
            return {**(headers or {}), "Lambda-Runtime-Invocation-Id": self.invocation_id}
        return dict(headers or {})


class Context:
    """The `context` Zappa's handler (and the functions it calls) are given."""

    def __init__(self, invocation: Invocation):
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = self.client_context = None
        self._deadline_ms = invocation.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_payload(exc: BaseException) -> dict:
    """What Lambda is told of a failure: its type. The traceback goes to the log only."""
    kind = type(exc).__name__
    return {"errorType": kind, "errorMessage": f"{kind}: see the function's log",
            "stackTrace": []}


class RuntimeApi:
    """Lambda's Runtime API at `address` (host:port)."""

    def __init__(self, address: str):
        self.address = address
        self._connection = None

    def _call(self, method, path, body=None, headers=None):
        if self._connection is None:  # no timeout: /next waits as long as there is no event
            self._connection = http.client.HTTPConnection(self.address)
        try:
            self._connection.request(method, API + path, body, headers or {})
            response = self._connection.getresponse()
            return response, response.read()
        except Exception:
            self._connection.close()
            self._connection = None
            raise

    def next(self) -> Invocation:
        response, body = self._call("GET", "/invocation/next")
        if response.status != 200:
            raise RuntimeError(f"/invocation/next answered {response.status}")
        return Invocation(response.headers, body)

    def respond(self, invocation: Invocation, result) -> None:
        body = json.dumps(result, ensure_ascii=False).encode()
        self._call("POST", f"/invocation/{invocation.request_id}/response", body,
                   invocation.answer_headers({"Content-Type": "application/json"}))

    def fail(self, invocation: Invocation, exc: BaseException) -> None:
        error = error_payload(exc)
        self._call("POST", f"/invocation/{invocation.request_id}/error",
                   json.dumps(error).encode(), invocation.answer_headers(
                       {"Content-Type": "application/json",
                        "Lambda-Runtime-Function-Error-Type": error["errorType"]}))

    def init_failed(self, exc: BaseException) -> None:
        error = error_payload(exc)
        self._call("POST", "/init/error", json.dumps(error).encode(),
                   {"Content-Type": "application/json",
                    "Lambda-Runtime-Function-Error-Type": error["errorType"]})

    def stream(self, invocation: Invocation) -> "ResponseStream":
        return ResponseStream(self.address, f"{API}/invocation/{invocation.request_id}/response",
                              invocation.answer_headers(STREAM_HEADERS))


class ResponseStream:
    """A streamed /response: HTTP/1.1 chunks, each sent as it is written, on a connection of
    its own (closed at the end, as the Runtime API asks of a streamed answer)."""

    def __init__(self, address: str, path: str, headers: dict):
        self.connection = http.client.HTTPConnection(address)  # TCP_NODELAY: no write waits
        self.connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            self.connection.putheader(name, value)
        self.connection.endheaders()

    def write(self, data: bytes) -> None:
        if data:
            self.connection.send(b"%x\r\n%s\r\n" % (len(data), data))

    def finish(self, failure: dict | None = None) -> None:
        """The last chunk; after a failure, the trailers that tell Lambda what went wrong."""
        end = b"0\r\n"
        if failure is not None:
            body = base64.b64encode(json.dumps(failure).encode())
            end += (b"Lambda-Runtime-Function-Error-Type: %s\r\n"
                    b"Lambda-Runtime-Function-Error-Body: %s\r\n"
                    % (failure["errorType"].encode(), body))
        try:
            self.connection.send(end + b"\r\n")
            self.connection.getresponse().read()
        finally:
            self.connection.close()

    def abandon(self) -> None:
        self.connection.close()


def prelude(status: str, headers: list[tuple[str, str]]) -> bytes:
    """The JSON API Gateway reads the status and headers from, as Zappa shapes them for a REST
    API: each header in `headers` (its last value) and `multiValueHeaders` (all of them), the
    cookies apart."""
    cookies = [value for name, value in headers if name.lower() == "set-cookie"]
    single, multi = {}, {}
    for name, value in headers:
        if name.lower() in FRAMING_HEADERS or name.lower() == "set-cookie":
            continue
        single[name] = value
        multi.setdefault(name, []).append(value)
    return json.dumps({"statusCode": int(status.split(None, 1)[0]), "headers": single,
                       "multiValueHeaders": multi, "cookies": cookies}).encode()


class Runtime:
    """The CMD's handler for everything, and Zappa's WSGI app, streamed, for API Gateway."""

    def __init__(self, api: RuntimeApi, handler_name: str):
        self.api = api
        module, _, function = handler_name.rpartition(".")
        self.handler = getattr(importlib.import_module(module), function)
        from zappa.handler import LambdaHandler
        from zappa.utilities import ApacheNCSAFormatters

        # Where the app says its stream failed after it began (its last event told the client).
        from kogpt2.web.stream import FAILED_KEY

        # Zappa's handler is one object per process: this is the one the CMD's handler uses,
        # made now (its settings, the environment they set, the app) if the import didn't.
        self.zappa = LambdaHandler()
        # The app itself: Zappa's middleware around it only re-cases Set-Cookie for a buffered
        # answer (and 0.63 repeats each cookie); a prelude has a field of its own for them.
        self.app = self.zappa.wsgi_app.application
        self.access_line = ApacheNCSAFormatters.format_log_with_response_time
        self.app_failed = FAILED_KEY
        self.streaming = response_streaming()
        log.info("lambda_runtime: API Gateway answers %s",
                 "streamed" if self.streaming else "buffered")

    def serve(self, invocation: Invocation) -> None:
        if invocation.trace_id:  # what the X-Ray SDK reads, as awslambdaric sets it
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = Context(invocation)
        if self.streaming and is_rest_api_event(invocation.event):
            self.stream(invocation, context)
            return
        try:
            result = self.handler(invocation.event, context)
        except Exception as exc:
            log.exception("the handler failed (request %s)", invocation.request_id)
            self.api.fail(invocation, exc)
            return
        self.api.respond(invocation, result)

    def wsgi_environ(self, event: dict, context: Context) -> dict:
        """The WSGI request Zappa's handler makes of a REST API event (zappa/handler.py)."""
        settings, zappa_log = self.zappa.settings, logging.getLogger("zappa.handler")
        if settings.DEBUG:
            zappa_log.debug("Zappa Event: %s", event)
        for name, value in (event.get("stageVariables") or {}).items():
            os.environ[name] = value
        # The event's path has no stage: on the API's own URL, Flask must put /STAGE in the
        # URLs it makes. A host-less event is the console's test button.
        host = (event.get("headers") or {}).get("Host")
        zappa_log.debug("host found: [%s]", host)
        on_api_url = "amazonaws.com" in host if host else not settings.DOMAIN
        script_name = f"/{settings.API_STAGE}" if on_api_url else ""
        return self.zappa._create_lambda_wsgi_environ(event, context, script_name, settings)

    def stream(self, invocation: Invocation, context: Context) -> None:
        started = time.perf_counter()
        answer = {}

        def start_response(status, headers, exc_info=None):
            if exc_info and "sent" in answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer.update(status=status, headers=headers)

        body, first = None, b""
        try:
            environ = self.wsgi_environ(invocation.event, context)
            body = self.app(environ, start_response)
            pieces = iter(body)
            for first in pieces:  # up to the first byte: a failure here is an /error
                if first:
                    break
            if "status" not in answer:
                raise RuntimeError("the app started no response")
        except Exception as exc:
            log.exception("the app failed before answering (request %s)", invocation.request_id)
            close(body)
            self.api.fail(invocation, exc)
            return
        stream = self.api.stream(invocation)
        answer["sent"] = len(first)
        failure = None
        try:
            stream.write(prelude(answer["status"], answer["headers"]) + DELIMITER + first)
            for piece in pieces:
                stream.write(piece)
                answer["sent"] += len(piece)
            if environ.get(self.app_failed):  # the app's last event says why
                failure = {"errorType": environ[self.app_failed],
                           "errorMessage": "the answer failed after it began"}
        except OSError:  # the Runtime API is gone (the invocation timed out): stop the app
            log.warning("the answer could not be sent on (request %s)", invocation.request_id)
            stream.abandon()
            close(body)
            return
        except Exception as exc:
            log.exception("the app failed mid-answer (request %s)", invocation.request_id)
            failure = error_payload(exc)
        try:
            stream.finish(failure)
        finally:
            close(body)
        status = int(answer["status"].split(None, 1)[0])
        rt_us = int((time.perf_counter() - started) * 1_000_000)
        logging.getLogger("zappa.wsgi").info(
            self.access_line(status, environ, answer["sent"], rt_us=rt_us))


def close(body) -> None:
    """The WSGI iterable's close(): the app's end of the request (a stream's log line, its
    generation stopped)."""
    if hasattr(body, "close"):
        try:
            body.close()
        except Exception:
            log.exception("the app failed closing its answer")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: lambda_runtime.py HANDLER (the image's CMD)", file=sys.stderr)
        return 2
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        print("lambda_runtime: AWS_LAMBDA_RUNTIME_API is not set: this runs inside AWS Lambda "
              "(locally, `make run` serves the app)", file=sys.stderr)
        return 2
    api = RuntimeApi(address)
    try:
        runtime = Runtime(api, argv[1])
    except Exception as exc:
        traceback.print_exc()
        api.init_failed(exc)
        return 1
    while True:
        runtime.serve(api.next())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
