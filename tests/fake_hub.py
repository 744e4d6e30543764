"""A Hugging Face hub on 127.0.0.1, enough for huggingface_hub's downloads to run for real.

It answers what `snapshot_download` and `HfApi.model_info` ask (huggingface_hub 2.4):
  GET  /api/models/OWNER/NAME/revision/REV      id, sha (the commit), siblings
  GET  /api/models/OWNER/NAME/tree/REV          the files, with sizes, blob ids, LFS sha256
  HEAD /OWNER/NAME/resolve/REV/FILE             X-Repo-Commit, ETag (X-Linked-Etag and
                                                X-Linked-Size for LFS files), Content-Length
  GET  /OWNER/NAME/resolve/REV/FILE             the bytes; a Range request gets 206, or 416
                                                when it starts at the file's size or past it
Weights (*.safetensors, *.bin) are LFS files, named by their sha256, the rest by their git blob
id, as on the hub. It records every request, and can cut the connection (`cut_after`) or stall until
`release` is set (`stall_after`) once a GET of a file has sent so many bytes.
"""

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")


@dataclass
class Repo:
    files: dict[str, bytes]
    refs: dict[str, str]  # branch or tag -> commit

    def commit_of(self, revision: str) -> str | None:
        if revision in self.refs.values():
            return revision
        return self.refs.get(revision)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    sent: int = 0  # body bytes sent


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # file -> bytes, then hang up (once)
    stall_after: dict[str, int] = field(default_factory=dict)  # file -> bytes, then wait (once)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def add(self, repo_id: str, files: dict[str, bytes] | Path, *, commit: str | None = None,
            refs: tuple[str, ...] = ("main",)) -> str:
        """Publish `files` (or a directory's) as `repo_id`; returns the commit."""
        if isinstance(files, Path):
            files = {p.name: p.read_bytes() for p in sorted(files.iterdir()) if p.is_file()}
        commit = commit or hashlib.sha1(repr(sorted(files)).encode() + repo_id.encode()).hexdigest()
        self.repos[repo_id] = Repo(dict(files), {ref: commit for ref in refs})
        return commit

    def gets(self, name: str) -> list[Request]:
        """The GET requests of a file's bytes."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{name}")
                and "/resolve/" in r.path]

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # --- answers ---------------------------------------------------------------------------

    def answer(self, handler, *, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        request = Request(handler.command, path, dict(handler.headers))
        self.requests.append(request)
        if path == "/":
            return self.send(handler, 200, b"fake hub\n", head=head)
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/(.+)", path)
        if api:
            return self.api(handler, request, *api.groups(), head=head)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            return self.resolve(handler, request, *resolve.groups(), head=head)
        self.send(handler, 404, b'{"error": "not found"}', head=head)

    def find(self, handler, repo_id: str, revision: str, head: bool):
        repo = self.repos.get(repo_id)
        if repo is None:
            self.send(handler, 404, b'{"error": "Repository not found"}', head=head,
                      headers={"X-Error-Code": "RepoNotFound"})
            return None, None
        commit = repo.commit_of(revision)
        if commit is None:
            self.send(handler, 404, b'{"error": "Invalid rev id"}', head=head,
                      headers={"X-Error-Code": "RevisionNotFound"})
            return None, None
        return repo, commit

    def api(self, handler, request, repo_id, kind, revision, head):
        repo, commit = self.find(handler, repo_id, revision, head)
        if repo is None:
            return
        if kind == "revision":
            body = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                    "siblings": [{"rfilename": name} for name in repo.files]}
        else:
            body = [describe(name, data) for name, data in repo.files.items()]
        self.send(handler, 200, json.dumps(body).encode(), head=head,
                  headers={"Content-Type": "application/json"})

    def resolve(self, handler, request, repo_id, revision, name, head):
        repo, commit = self.find(handler, repo_id, revision, head)
        if repo is None:
            return
        if name not in repo.files:
            return self.send(handler, 404, b'{"error": "Entry not found"}', head=head,
                             headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        data = repo.files[name]
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes",
                   "ETag": f'"{git_blob_id(data)}"'}
        if name.endswith(LFS_SUFFIXES):
            headers.update({"X-Linked-Etag": f'"{sha256(data)}"', "X-Linked-Size": str(len(data))})
        status, start = 200, 0
        ranged = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged.group(1))
            if start >= len(data):  # as the hub's storage answers: nothing is there
                return self.send(handler, 416, b"", head=head,
                                 headers={**headers, "Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send(handler, status, data[start:], head=head, headers=headers, request=request,
                  name=name)

    def send(self, handler, status, body, *, head, headers=None, request=None, name=None):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if head:
            return
        cut, stall = self.cut_after.pop(name, None), self.stall_after.pop(name, None)
        limit = cut if cut is not None else stall
        if limit is None:
            handler.wfile.write(body)
            if request is not None:
                request.sent = len(body)
            return
        handler.wfile.write(body[:limit])
        handler.wfile.flush()
        request.sent = limit
        if stall is not None:
            self.stalled.set()
            self.release.wait(120)
            try:
                handler.wfile.write(body[limit:])  # the rest, if the client is still there
                request.sent = len(body)
            except OSError:
                handler.close_connection = True
            return
        handler.close_connection = True
        handler.connection.shutdown(2)  # SHUT_RDWR: the client sees the body end early


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def describe(name: str, data: bytes) -> dict:
    entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
    if name.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
    return entry
