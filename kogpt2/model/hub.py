"""Turn a Hugging Face hub id into a local snapshot directory, failing fast when offline."""

import os
import socket
from urllib.parse import urlsplit

from .engine import ModelLoadError, short_reason

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


def snapshot(repo_id: str) -> str:
    """A local directory holding `repo_id`: the cached copy, else a fresh download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, allow_patterns=MODEL_FILES, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # an invalid id, say
        raise ModelLoadError(f"{repo_id!r} is not a usable hub id: {short_reason(exc)}") from exc
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError(f"{repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set")
    reason = hub_unreachable_reason()
    if reason:
        raise ModelLoadError(f"could not download {repo_id!r}: {reason}")
    try:
        return snapshot_download(repo_id, allow_patterns=MODEL_FILES)
    except Exception as exc:
        raise ModelLoadError(f"could not download {repo_id!r}: {short_reason(exc)}") from exc
