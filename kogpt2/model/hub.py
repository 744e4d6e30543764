"""A Hugging Face hub id as a local snapshot directory: the cached one, or a download that
reports its progress and fails fast when the hub can't be reached."""

import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from .seam import ModelLoadError, short_reason
from .source import Source

MODEL_FILES = ["*.json", "*.safetensors", "pytorch_model.bin", "*.txt"]


def hub_unreachable_reason(timeout_s: float = 3.0) -> str | None:
    """Why the hub can't be reached, or None. The client's own retries take minutes."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"the Hugging Face hub ({constants.ENDPOINT}) can't be reached: {short_reason(exc)}"
    return None


def _source(repo_id: str, directory: str) -> Source:
    path = Path(directory)  # .../snapshots/<commit>
    return Source(path, repo_id, path.name)


def cached(repo_id: str, revision: str | None = None) -> Source | None:
    """The snapshot already on this machine, without asking the hub."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        directory = snapshot_download(
            repo_id, revision=revision, allow_patterns=MODEL_FILES, local_files_only=True
        )
    except LocalEntryNotFoundError:
        return None
    except Exception as exc:  # an invalid id, say
        raise ModelLoadError(f"{repo_id!r} is not a usable hub id: {short_reason(exc)}") from exc
    return _source(repo_id, directory)


def download(repo_id: str, revision: str | None = None,
             progress: Callable[[float], None] = lambda fraction: None) -> Source:
    """Download `repo_id`, calling `progress` with the fraction of bytes received."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError(f"{repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set")
    reason = hub_unreachable_reason()
    if reason:
        raise ModelLoadError(f"could not download {repo_id!r}: {reason}")

    class Bytes(tqdm):  # the hub's byte counters, reported instead of drawn
        def __init__(self, *args, unit="it", **kwargs):
            super().__init__(*args, unit=unit, **{**kwargs, "disable": True})
            self.counts_bytes, self.done = unit == "B", 0

        def update(self, n=1):
            self.done += n or 0
            if self.counts_bytes and self.total:
                progress(min(1.0, self.done / self.total))

    try:
        directory = snapshot_download(
            repo_id, revision=revision, allow_patterns=MODEL_FILES, tqdm_class=Bytes
        )
    except Exception as exc:
        raise ModelLoadError(f"could not download {repo_id!r}: {short_reason(exc)}") from exc
    return _source(repo_id, directory)
