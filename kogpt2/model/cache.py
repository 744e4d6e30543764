"""What the cache of prepared copies holds, and what of it can go (`scripts/cache.py`).

Each directory of the cache is one of:
  in use     the copy the configured model is served from
  unused     a complete copy this installation could load, for another model, engine or format
  stale      a copy this installation will never load again: written by other versions of its
             engine's libraries or in an older format (prepare.FORMAT_VERSION), or from a local
             directory that is gone or has changed since
  incomplete not sealed: left by a preparation killed half-way, or by an older version
  preparing  a preparation running now (its lock is held)
  set aside  a copy that failed to load, moved away to be prepared again
`prune` removes stale, incomplete and set-aside ones; with `everything_unused`, unused ones too.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from . import engines, prepare
from .source import Source
from .vocab import read_metadata

STATUSES = ("in use", "unused", "preparing", "stale", "incomplete", "set aside")
PRUNABLE = ("stale", "incomplete", "set aside")


@dataclass(frozen=True)
class Entry:
    path: Path
    status: str
    reason: str  # why, in words ("" when the status says it all)
    engine: str = "?"
    weight_format: str = "?"
    versions: str = "?"
    source: str = "?"
    size: int = 0  # bytes

    @property
    def name(self) -> str:
        return self.path.name


def entries(cache_root: Path, in_use: Path | None = None) -> list[Entry]:
    """Every directory of the cache, described; lock files are left out."""
    if not cache_root.is_dir():
        return []
    return [describe(path, in_use) for path in sorted(cache_root.iterdir()) if path.is_dir()]


def describe(path: Path, in_use: Path | None) -> Entry:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if path.name.startswith("."):  # .<name>.<random>: a preparation's work directory
        name = path.name[1:].split(".")[0]
        if _locked(path.parent / f"{name}.lock"):
            return Entry(path, "preparing", "being written now", size=size)
        return Entry(path, "incomplete", "left by a preparation that did not finish", size=size)
    if path.name.endswith(prepare.SET_ASIDE_SUFFIX):
        return Entry(path, "set aside", "failed to load; it was prepared again", size=size)
    if prepare.read_marker(path) is None:
        return Entry(path, "incomplete", f"no {prepare.MARKER_FILE}", size=size)
    try:
        metadata = read_metadata(path) or {}
    except Exception as exc:  # an unreadable record: nothing will load it
        return Entry(path, "stale", f"unreadable record: {exc}", size=size)
    kind = engines.ENGINES.get(metadata.get("engine"))
    versions = metadata.get("versions") or {}
    format_version = metadata.get("format_version", 1)  # entries before it was recorded: 1
    described = dict(
        engine=metadata.get("engine", "?"), weight_format=metadata.get("weight_format", "?"),
        versions=", ".join([*(f"{lib} {v}" for lib, v in versions.items()),
                            f"format {format_version}"]),
        source=_source_of(metadata), size=size,
    )
    status, reason = _status(path, kind, versions, format_version, metadata, in_use)
    return Entry(path, status, reason, **described)


def _status(path, kind, versions, format_version, metadata, in_use) -> tuple[str, str]:
    if format_version != prepare.FORMAT_VERSION:
        return "stale", f"format {format_version}; this version writes {prepare.FORMAT_VERSION}"
    if kind is None:
        return "stale", f"no engine {metadata.get('engine')!r} any more"
    if not kind.installed():
        return "unused", f"the {kind.name} engine is not installed here"
    installed = kind.versions()
    if versions != installed:
        differ = ", ".join(f"{lib} {versions.get(lib, '?')} (installed {v})"
                           for lib, v in installed.items() if versions.get(lib) != v)
        return "stale", f"made with {differ}"
    changed = _local_source_changed(metadata)
    if changed:
        return "stale", changed
    if in_use is not None and path.resolve() == in_use.resolve():
        return "in use", ""
    return "unused", ""


def _source_of(metadata: dict) -> str:
    if metadata.get("hub_id"):
        revision = metadata.get("revision") or "?"
        return f"{metadata['hub_id']}@{revision[:12]}"
    return str(metadata.get("source", "?"))


def _local_source_changed(metadata: dict) -> str:
    """Why a copy of a local directory can't be what that directory would give now."""
    key = metadata.get("source_key")
    if metadata.get("hub_id") or not isinstance(key, dict) or "path" not in key:
        return ""
    path = Path(key["path"])
    if not path.is_dir():
        return f"its source {path} is gone"
    if Source(path, None, None).identity() != key:
        return f"its source {path} has changed since"
    return ""


def _locked(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return True
    lock.release()
    return False


def remove(entry: Entry) -> bool:
    """Delete an entry unless a preparation of the same name holds its lock; True if gone."""
    name = entry.name.lstrip(".").split(".")[0]  # .<name>.<random>, <name>.broken, <name>
    lock = FileLock(str(entry.path.parent / f"{name}.lock"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    try:
        shutil.rmtree(entry.path)
    finally:
        lock.release()
    return True
