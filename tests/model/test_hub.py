"""Downloads from the hub (tests/fake_hub.py on 127.0.0.1, huggingface_hub for real): a snapshot
is used only whole, an interrupted download resumes where it stopped, progress counts bytes,
and the reachability check goes the way downloads go (proxies included)."""

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kogpt2.model import Generator, ModelLoadError, ModelLoading, hub

ROOT = Path(__file__).resolve().parents[2]
REPO = "kogpt2-tests/tiny"
WEIGHTS = "model.safetensors"
MiB = 1 << 20


@pytest.fixture
def published(fake_hub, tiny_model_dir):
    """The tiny stand-in, published as REPO; returns its files."""
    fake_hub.add(REPO, tiny_model_dir)
    files = fake_hub.repos[REPO].files
    assert len(files[WEIGHTS]) > 6 * MiB  # room to stop half-way at a whole chunk
    return files


def blobs(fake_hub) -> Path:
    return fake_hub.cache / "models--kogpt2-tests--tiny" / "blobs"


def partials(fake_hub) -> list[Path]:
    return list(blobs(fake_hub).glob(f"*{hub.PARTIAL_SUFFIX}"))


def test_a_first_start_downloads_the_model_counting_bytes(fake_hub, published):
    reports = []
    source = hub.download(REPO, progress=lambda done, total: reports.append((done, total)))
    total = sum(len(data) for data in published.values())
    assert reports[0] == (0, total) and reports[-1] == (total, total)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert all(t == total for _, t in reports)
    assert (source.hub_id, source.revision) == (REPO, fake_hub.repos[REPO].refs["main"])
    for name, data in published.items():
        assert (source.path / name).read_bytes() == data
    assert partials(fake_hub) == []
    asked = len(fake_hub.requests)
    assert hub.cached(REPO) == source  # whole: used without asking the hub
    assert len(fake_hub.requests) == asked


def test_a_download_cut_midway_resumes_where_it_stopped(fake_hub, published):
    size = len(published[WEIGHTS])
    fake_hub.cut_after[WEIGHTS] = 4 * MiB + 1000
    with pytest.raises(ModelLoadError, match="could not download"):
        hub.download(REPO)
    [partial] = partials(fake_hub)
    kept = partial.stat().st_size
    assert 0 < kept <= 4 * MiB + 1000
    assert hub.cached(REPO) is None  # config and tokenizer alone are not a model

    source = hub.download(REPO)
    first, second = fake_hub.gets(WEIGHTS)
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={kept}-"
    assert second.sent == size - kept  # only the rest came again
    assert (source.path / WEIGHTS).read_bytes() == published[WEIGHTS]
    assert partials(fake_hub) == []


def test_a_whole_partial_is_checked_without_asking_for_more(fake_hub, published):
    """What a download killed between its last byte and its check leaves: the whole file,
    unchecked. A real server answers a Range from its size with 416: nothing is asked."""
    from fake_hub import sha256

    data = published[WEIGHTS]
    blobs(fake_hub).mkdir(parents=True)
    (blobs(fake_hub) / (sha256(data) + hub.PARTIAL_SUFFIX)).write_bytes(data)
    reports = []
    source = hub.download(REPO, progress=lambda done, total: reports.append((done, total)))
    assert fake_hub.gets(WEIGHTS) == []
    assert (source.path / WEIGHTS).read_bytes() == data
    assert partials(fake_hub) == []
    assert reports[-1][0] == reports[-1][1]


def test_a_whole_partial_that_does_not_match_is_fetched_again_from_the_start(
        fake_hub, published):
    from fake_hub import sha256

    data = published[WEIGHTS]
    blobs(fake_hub).mkdir(parents=True)
    (blobs(fake_hub) / (sha256(data) + hub.PARTIAL_SUFFIX)).write_bytes(b"x" * len(data))
    source = hub.download(REPO)
    (fetched,) = fake_hub.gets(WEIGHTS)
    assert "Range" not in fetched.headers and fetched.sent == len(data)
    assert (source.path / WEIGHTS).read_bytes() == data
    assert partials(fake_hub) == []


def test_the_fake_hub_refuses_a_range_from_the_end_as_the_hub_does(fake_hub, published):
    import httpx2

    size = len(published[WEIGHTS])
    url = f"{fake_hub.url}/{REPO}/resolve/main/{WEIGHTS}"
    answer = httpx2.get(url, headers={"Range": f"bytes={size}-"})
    assert answer.status_code == 416 and answer.headers["Content-Range"] == f"bytes */{size}"
    rest = httpx2.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.content == published[WEIGHTS][-10:]


DOWNLOADER = """
import sys
from kogpt2.model import hub
hub.download(sys.argv[1], progress=lambda done, total: print(done, total, flush=True))
"""


def test_a_download_killed_midway_resumes_on_the_next_start(fake_hub, published):
    fake_hub.stall_after[WEIGHTS] = 4 * MiB
    process = subprocess.Popen([sys.executable, "-c", DOWNLOADER, REPO], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert fake_hub.stalled.wait(60), "the download never reached the weights"
        deadline = time.monotonic() + 30
        while not partials(fake_hub) or partials(fake_hub)[0].stat().st_size < 4 * MiB:
            assert time.monotonic() < deadline, "the first 4 MiB never reached the disk"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)  # as a killed container dies
        process.communicate()
    fake_hub.release.set()

    generator = Generator(REPO, engine="transformers", threads=1)
    with pytest.raises(ModelLoading):
        generator.load()
    generator.load(wait=True)
    _, again = fake_hub.gets(WEIGHTS)
    assert again.headers["Range"] == f"bytes={4 * MiB}-"
    assert again.sent == len(published[WEIGHTS]) - 4 * MiB
    assert generator.generate("근육이", None).sequences[0].text.startswith("근육이")


def test_a_snapshot_without_its_weights_is_completed(fake_hub, published):
    """What an interrupted first start of an older huggingface_hub leaves: config and tokenizer
    linked into the snapshot, no weights, and no listing of the repo's files."""
    from huggingface_hub import hf_hub_download

    for name in ("config.json", "tokenizer.json"):
        hf_hub_download(REPO, name)
    assert not (blobs(fake_hub).parent / "trees").exists()
    assert hub.cached(REPO) is None
    fake_hub.requests.clear()

    generator = Generator(REPO, engine="transformers", threads=1)
    with pytest.raises(ModelLoading):
        generator.load()
    generator.load(wait=True)
    fetched = {r.path.rsplit("/", 1)[1] for r in fake_hub.requests
               if r.method == "GET" and "/resolve/" in r.path}
    assert WEIGHTS in fetched
    assert not {"config.json", "tokenizer.json"} & fetched  # what was there stays
    assert hub.cached(REPO) is not None


def test_the_progress_of_a_download_is_told_while_it_runs(fake_hub, published):
    fake_hub.stall_after[WEIGHTS] = 4 * MiB
    generator = Generator(REPO, engine="transformers", threads=1)
    with pytest.raises(ModelLoading):
        generator.load()
    assert fake_hub.stalled.wait(60)
    deadline = time.monotonic() + 30
    while (generator.progress is None or generator.progress.percent == 0):
        assert time.monotonic() < deadline, generator.progress
        time.sleep(0.05)
    progress = generator.progress
    assert (generator.state, progress.step) == ("loading", "downloading")
    assert 0 < progress.percent < 95
    fake_hub.release.set()
    generator.load(wait=True)
    assert generator.state == "ready"


def test_a_relative_path_under_an_existing_directory_is_local(fake_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    generator = Generator("models/kogpt2-ov", engine="transformers")
    with pytest.raises(ModelLoadError, match="'models/kogpt2-ov' does not exist"):
        generator.load()
    assert fake_hub.requests == []  # never asked the hub for an owner "models"


# --- reachability, through the proxies the environment names ---------------------------------

CHECK = "from kogpt2.model import hub; print(hub.hub_unreachable_reason())"


def reachability(**env) -> str:
    environment = {k: v for k, v in os.environ.items()
                   if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")}
    process = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                             text=True, env={**environment, **env}, timeout=60)
    assert process.returncode == 0, process.stderr
    return process.stdout.strip()


@pytest.fixture
def proxy():
    """An HTTP proxy on 127.0.0.1 that answers every request itself and records it."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_hub_is_reached_through_the_proxy(proxy):
    url, seen = proxy
    # No such host here: only the proxy can reach it.
    assert reachability(HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=url) == "None"
    assert seen == ["HEAD http://hub.invalid/"]


def test_a_dead_proxy_makes_the_hub_unreachable_unless_no_proxy_names_it(
        fake_hub, unused_port):
    dead = f"http://127.0.0.1:{unused_port}"
    said = reachability(HF_ENDPOINT=fake_hub.url, HTTP_PROXY=dead)
    assert said.startswith(f"the Hugging Face hub ({fake_hub.url}) can't be reached")
    assert fake_hub.requests == []
    assert reachability(HF_ENDPOINT=fake_hub.url, HTTP_PROXY=dead, NO_PROXY="127.0.0.1") == "None"
    assert [r.method for r in fake_hub.requests] == ["HEAD"]
