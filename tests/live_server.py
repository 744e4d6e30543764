"""Calling a running server from tests (scripts/local_server.py starts it)."""

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from local_server import call  # noqa: F401 (the tests call servers through it)


def post_json(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.load(response)


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@contextlib.contextmanager
def open_stream(url: str, body: dict, headers: dict | None = None, timeout: float = 60):
    """POST `body` with "stream": true; yields the response, whose `events()` gives
    (seconds since the request was sent, event) as each arrives. Leaving the block closes the
    connection, read to the end or not: what a browser tab that goes away does."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        sent = time.monotonic()
        connection.request("POST", parts.path, body=json.dumps({**body, "stream": True}),
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()

        def events():
            lines = []
            while line := response.readline():
                if line != b"\n":
                    lines.append(line)
                    continue
                (data,) = lines  # one `data:` line per event
                lines = []
                yield time.monotonic() - sent, json.loads(data.removeprefix(b"data: "))
            assert not lines, f"the stream ended mid-event: {lines}"

        response.events = events
        yield response
    finally:
        connection.close()
def access_line(server_log: Path, request_id: str, wait_s: float = 20) -> dict:
    """The server's access-log line for `request_id` (a stream's is written when it ends)."""
    deadline = time.monotonic() + wait_s
    while True:
        for text in server_log.read_text(encoding="utf-8").splitlines():
            if text.startswith("{") and json.loads(text).get("request_id") == request_id:
                return json.loads(text)
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.05)
