"""Where the model comes from: a hub id or a local directory, what it is called in public, and
what identifies it well enough to key a prepared copy on."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .seam import ModelLoadError, short_reason
from .vocab import read_metadata

DEFAULT_MODEL_ID = "skt/kogpt2-base-v2"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def is_local(source: str) -> bool:
    """A path on this machine rather than a hub id. `models/kogpt2-ov` looks like `owner/name`:
    it is a path when `models` is a directory here, even if `kogpt2-ov` isn't there (yet)."""
    path = Path(source).expanduser()
    return (
        path.exists()
        or source.startswith(("/", "./", "../", "~"))
        or not HUB_ID.fullmatch(source)
        or Path(path.parts[0]).is_dir()
    )


def check_local_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"model directory {str(path)!r} has no tokenizer.json")
    return path


@dataclass(frozen=True)
class Source:
    """A model directory on this machine, and where it came from."""

    path: Path
    hub_id: str | None  # the hub id it was downloaded or prepared from, if any
    revision: str | None  # the hub commit, if known

    def identity(self) -> dict:
        """What keys a prepared copy: the hub id and commit, or the path with its files' sizes
        and times (a changed file means a new copy)."""
        if self.hub_id and self.revision:
            return {"hub_id": self.hub_id, "revision": self.revision}
        files = sorted(p for p in self.path.iterdir() if p.is_file())
        return {
            "path": str(self.path.resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        }

    def max_positions(self) -> int:
        """The model's positions (prompt + new tokens), from its config or its metadata."""
        metadata = read_metadata(self.path) or {}
        if isinstance(metadata.get("max_positions"), int):
            return metadata["max_positions"]
        path = self.path / "config.json"
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("n_positions")
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not read {str(path)!r}: {short_reason(exc)}") from exc
        if not isinstance(value, int) or value < 2:
            raise ModelLoadError(f"{str(path)!r} has no usable n_positions")
        return value


def local_source(directory: str) -> Source:
    path = check_local_dir(Path(directory).expanduser())
    metadata = read_metadata(path) or {}
    hub_id = metadata.get("hub_id")
    return Source(path, hub_id if isinstance(hub_id, str) else None, metadata.get("revision"))


def public_name(configured: str | None, model: str, source: Source | None) -> str:
    """The model's name in answers: the configured name, else the hub id it came from, else
    its folder's name (a fine-tuned model or a stand-in is not KoGPT2 itself). Never the
    rest of a path of this machine."""
    if configured:
        return configured
    if not is_local(model):
        return model
    if source is not None and source.hub_id:
        return source.hub_id
    return Path(model).expanduser().resolve().name
