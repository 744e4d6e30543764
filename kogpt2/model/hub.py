"""A Hugging Face hub id as a local snapshot directory: the cached one when it holds every file
a model needs, else a download that picks up where an interrupted one stopped.

huggingface_hub (2.4) downloads each file into a temporary file of its own process and deletes
it when the download fails, so a download cut off by a lost connection, Ctrl-C or a killed
container starts again from zero. Here each file is fetched into `blobs/<etag>.kogpt2-partial`
in the hub's own cache, resumed with an HTTP Range request, checked against its etag (a
sha256 or git blob id) and renamed to `blobs/<etag>`; `snapshot_download` then finds the blobs
and only links them into the snapshot. Every request goes through huggingface_hub's HTTP
session, which honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
"""

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import engines
from .seam import ModelLoadError, short_reason
from .source import Source

log = logging.getLogger(__name__)

MODEL_FILES = ["*.json", "*.safetensors", "pytorch_model.bin", "*.txt"]
NEEDED_FILES = ["config.json", "tokenizer.json"]  # and one of the transformers weights
PARTIAL_SUFFIX = ".kogpt2-partial"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 10.0  # connecting, and each API answer
READ_TIMEOUT_S = 60.0  # silence in the middle of a file
Progress = Callable[[int, int], None]  # bytes here so far, bytes in all


@dataclass(frozen=True)
class RemoteFile:
    name: str
    url: str
    etag: str  # the blob's name in the hub's cache: a sha256 (LFS) or a git blob id
    size: int


def hub_unreachable_reason(timeout_s: float = 3.0) -> str | None:
    """Why the hub can't be reached, or None; asked the way downloads ask (proxies included),
    because the client's own retries take minutes."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        response = get_session().head(constants.ENDPOINT, timeout=timeout_s,
                                      follow_redirects=False)
    except httpx2.HTTPError as exc:  # refused, no such host, a proxy's refusal, a timeout
        return f"the Hugging Face hub ({constants.ENDPOINT}) can't be reached: {short_reason(exc)}"
    if response.status_code in (502, 503, 504):  # a proxy or gateway that can't reach it
        return (f"the Hugging Face hub ({constants.ENDPOINT}) can't be reached: "
                f"HTTP {response.status_code}")
    return None


def missing_files(path: Path) -> list[str]:
    """What a transformers model directory lacks for an engine to load it."""
    missing = [name for name in NEEDED_FILES if not (path / name).is_file()]
    weights = engines.TRANSFORMERS.marker_files
    if not any((path / name).is_file() for name in weights):
        missing.append(" or ".join(weights))
    return missing


def _source(repo_id: str, directory: str) -> Source:
    path = Path(directory)  # .../snapshots/<commit>
    return Source(path, repo_id, path.name)


def cached(repo_id: str, revision: str | None = None) -> Source | None:
    """The snapshot already on this machine, without asking the hub, if it holds every file
    a model needs: a half-downloaded one is not a model, and `download` completes it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        directory = snapshot_download(
            repo_id, revision=revision, allow_patterns=MODEL_FILES, local_files_only=True
        )
    except LocalEntryNotFoundError:  # none, or one the hub's own listing knows is incomplete
        return None
    except Exception as exc:  # an invalid id, say
        raise ModelLoadError(f"{repo_id!r} is not a usable hub id: {short_reason(exc)}") from exc
    if missing_files(Path(directory)):
        return None
    return _source(repo_id, directory)


def download(repo_id: str, revision: str | None = None,
             progress: Progress = lambda done, total: None) -> Source:
    """Download what the cache lacks of `repo_id` at `revision` (default: main), resuming
    files an earlier attempt left half-done; `progress(done, total)` hears the bytes."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError(f"{repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set")
    reason = hub_unreachable_reason()
    if reason:
        raise ModelLoadError(f"could not download {repo_id!r}: {reason}")
    try:
        directory = _download(repo_id, revision or "main", progress)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not download {repo_id!r}: {short_reason(exc)}") from exc
    missing = missing_files(Path(directory))
    if missing:
        raise ModelLoadError(f"{repo_id!r} has no {', '.join(missing)}: it is not a model that "
                             "an engine here reads")
    return _source(repo_id, directory)


def _download(repo_id: str, revision: str, progress: Progress) -> str:
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import filter_repo_objects
    from tqdm.auto import tqdm

    api = HfApi(endpoint=constants.ENDPOINT)
    resolved = api.resolve_revision(repo_id, revision=revision)  # and recorded in the cache
    info = api.model_info(repo_id, revision=resolved.resolved, timeout=TIMEOUT_S)
    names = filter_repo_objects([sibling.rfilename for sibling in info.siblings or []],
                                allow_patterns=MODEL_FILES)
    files = [_remote_file(repo_id, info.sha, name) for name in names]
    blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    blobs = blobs / "blobs"
    wanted = [file for file in files if not (blobs / file.etag).is_file()]
    here = {file.etag: _partial_size(blobs, file) for file in wanted}
    total, done = sum(file.size for file in wanted), sum(here.values())
    if wanted:
        log.info("downloading %d files of %s at %s: %d MB, %d MB of it already here", len(wanted),
                 repo_id, info.sha[:12], total >> 20, done >> 20)
    progress(done, total)

    def received(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    for file in wanted:
        _fetch(file, blobs, received, here[file.etag])

    class Silent(tqdm):  # snapshot_download only links what is here now: nothing to show
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    return snapshot_download(repo_id, revision=resolved, allow_patterns=MODEL_FILES,
                             tqdm_class=Silent)


def _remote_file(repo_id: str, commit: str, name: str) -> RemoteFile:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, name, revision=commit, endpoint=constants.ENDPOINT)
    metadata = get_hf_file_metadata(url, timeout=TIMEOUT_S, endpoint=constants.ENDPOINT)
    if not metadata.etag or metadata.size is None:
        raise ModelLoadError(f"the hub gave no ETag or size for {name!r} of {repo_id!r}")
    return RemoteFile(name, metadata.location, metadata.etag, metadata.size)


def _partial_size(blobs: Path, file: RemoteFile) -> int:
    partial = blobs / (file.etag + PARTIAL_SUFFIX)
    size = partial.stat().st_size if partial.is_file() else 0
    return size if size <= file.size else 0


def _fetch(file: RemoteFile, blobs: Path, received: Callable[[int], None], counted: int) -> None:
    """`blobs/<etag>`, fetched from where a partial copy ends (`counted` bytes of it were
    already reported); another process fetching the same blob holds its lock meanwhile."""
    from filelock import FileLock

    blobs.mkdir(parents=True, exist_ok=True)
    final, partial = blobs / file.etag, blobs / (file.etag + PARTIAL_SUFFIX)
    with FileLock(str(partial) + ".lock"):
        if final.is_file():  # another process fetched it while this one waited
            received(file.size - counted)
            return
        have = _partial_size(blobs, file)
        received(have - counted)
        # A whole file left unchecked (stopped between its last byte and its check) is checked
        # without asking for more: a Range from its size is answered 416.
        if have == file.size and not _matches(partial, file.etag):
            partial.unlink()  # whole, but not the blob: fetched again from the start
            received(-have)
            have = 0
        if have < file.size:
            _get(file, partial, have, received)
            size = partial.stat().st_size
            if size != file.size:
                raise ModelLoadError(f"{file.name!r}: received {size} of {file.size} bytes")
            if not _matches(partial, file.etag):
                partial.unlink()
                raise ModelLoadError(f"{file.name!r} does not match its hash {file.etag}; it "
                                     "will be downloaded again")
        os.replace(partial, final)


def _get(file: RemoteFile, partial: Path, have: int, received: Callable[[int], None]) -> None:
    """Append to `partial` (`have` bytes of it are here) the rest of the file, or write it
    whole if the server sends it all again."""
    import httpx2
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    timeout = httpx2.Timeout(TIMEOUT_S, read=READ_TIMEOUT_S)
    with get_session().stream("GET", file.url, headers=headers, timeout=timeout) as response:
        hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server sends it all again
            received(-have)
            have = 0
        with open(partial, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                received(len(chunk))
            out.flush()
            os.fsync(out.fileno())


def _matches(path: Path, etag: str) -> bool:
    """Whether the file is the blob `etag` names: LFS files by their sha256, others by their
    git blob id. Another kind of etag can't be checked."""
    if len(etag) == 64:
        digest = hashlib.sha256()
    elif len(etag) == 40:
        digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        return True
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest() == etag
