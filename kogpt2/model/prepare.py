"""Prepare an engine's own copy of a transformers model once, into a cache, and reuse it.

An entry is keyed on the source (hub id and commit, or path with its files' sizes and times),
the engine, the weight format and the versions of the libraries that read it. It is written
into a temporary directory, every file and directory fsynced, then sealed with a marker
(MARKER_FILE: the files and their sizes) and renamed into place: a directory without its
marker, whatever a crash or a power cut left, is not an entry. A file lock makes a second
process wait for the first one's entry instead of preparing the same model again. An entry
that fails to load is set aside (`<name>.broken`) by the generator, to be prepared again.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from . import engines
from .seam import ModelLoadError, short_reason
from .source import Source
from .vocab import tokenizer_config, write_metadata

log = logging.getLogger(__name__)

# Bumped when what prepare() writes changes shape, so old entries aren't read as new ones.
FORMAT_VERSION = 3  # 2: OpenVINO takes position_ids; 3: and logits_at, not logits_from
MARKER_FILE = "kogpt2-complete.json"
SET_ASIDE_SUFFIX = ".broken"
WAITING = "waiting for another process preparing the same model"
# report(stage in words, how far it is (0–1) or None, step (seam.STEPS) or None): engines call
# it with the first two.
Report = Callable[..., None]


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kogpt2"


def entry_name(source: Source, kind: engines.EngineKind, weight_format: str) -> str:
    key = {
        "source": source.identity(),
        "engine": kind.name,
        "weight_format": weight_format,
        "versions": kind.versions(),
        "format_version": FORMAT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{kind.name}-{weight_format}-{digest}"


def cached(cache_root: Path, source: Source, kind, weight_format: str) -> Path | None:
    path = cache_root / entry_name(source, kind, weight_format)
    return path if read_marker(path) is not None else None


def read_marker(entry: Path) -> dict | None:
    """The entry's seal, or None: no entry (yet) at that path."""
    try:
        marker = json.loads((entry / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None


def check_entry(entry: Path) -> None:
    """Raise ModelLoadError unless every file the seal lists is there at its size: a copy
    truncated by a disk error or a hand is found before an engine reads it."""
    marker = read_marker(entry)
    if marker is None:
        raise ModelLoadError(f"the prepared copy {str(entry)!r} is not complete (no {MARKER_FILE})")
    for name, size in marker["files"].items():
        path = entry / name
        found = path.stat().st_size if path.is_file() else None
        if found != size:
            state = "missing" if found is None else f"{found} bytes, not {size}"
            raise ModelLoadError(f"the prepared copy {str(entry)!r} is damaged: {name} is {state}")


def seal(out: Path) -> None:
    """Make what `out` holds durable, then mark it complete: fsync every file and directory,
    then write the marker (fsynced too). Renaming `out` into place comes after."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            _fsync(path)
            files[path.relative_to(out).as_posix()] = path.stat().st_size
    for directory in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
        _fsync(directory)
    marker = {"id": uuid.uuid4().hex, "format_version": FORMAT_VERSION, "files": files}
    with open(out / MARKER_FILE, "w", encoding="utf-8") as stream:
        json.dump(marker, stream, indent=2)
        stream.flush()
        os.fsync(stream.fileno())
    _fsync(out)


def publish(work: Path, final: Path) -> None:
    """Rename a sealed directory into place, and make the rename durable."""
    os.rename(work, final)
    _fsync(final.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(entry: Path, marker_id: str | None) -> Path | None:
    """Move an entry that failed to load to `<name>.broken` (replacing an older one), so that it
    is prepared again; None if it is no longer the entry that failed (`marker_id`): another
    process prepared it again meanwhile."""
    lock = FileLock(str(entry.parent / f"{entry.name}.lock"))
    with lock:
        marker = read_marker(entry)
        if marker is not None and marker.get("id") != marker_id:
            return None
        aside = entry.with_name(entry.name + SET_ASIDE_SUFFIX)
        shutil.rmtree(aside, ignore_errors=True)
        if entry.exists():
            publish(entry, aside)
        return aside


def prepare_command(kind, weight_format: str) -> str:
    return (
        f"python scripts/convert.py SRC OUT --engine {kind.name} --weight-format {weight_format}"
        " (where torch and transformers are installed), then set KOGPT2_MODEL=OUT"
    )


def write_entry(source: Source, kind, weight_format: str, out: Path, report: Report) -> None:
    """Write `kind`'s copy of `source` into the empty directory `out`, and seal it."""
    try:
        engines.prepare(kind, source.path, out, weight_format=weight_format, progress=report)
    except ModelLoadError:
        raise
    except ImportError as exc:
        raise ModelLoadError(
            f"preparing the model for the {kind.name} engine needs torch and transformers "
            f"({short_reason(exc)}); prepare it ahead of time: "
            f"{prepare_command(kind, weight_format)}"
        ) from exc
    except Exception as exc:  # a converter fails in its own ways
        raise ModelLoadError(
            f"could not prepare {str(source.path)!r} for the {kind.name} engine: "
            f"{short_reason(exc)}"
        ) from exc
    report("saving", None)
    shutil.copyfile(source.path / "tokenizer.json", out / "tokenizer.json")
    max_positions = source.max_positions()
    (out / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(max_positions), indent=2) + "\n"
    )
    write_metadata(
        out,
        hub_id=source.hub_id,
        revision=source.revision,
        source=source.hub_id or str(source.path.resolve()),
        engine=kind.name,
        weight_format=weight_format,
        max_positions=max_positions,
        versions=kind.versions(),
        format_version=FORMAT_VERSION,
        source_key=source.identity(),
    )
    seal(out)


def new_work_dir(parent: Path, prefix: str) -> Path:
    """An empty directory to write an entry into, readable by all as the entry will be (mkdtemp
    makes it its owner's alone; an image built as root runs as another user on Lambda)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    work.chmod(0o755)
    return work


def prepare(source: Source, kind, weight_format: str, cache_root: Path, report: Report) -> Path:
    """The cache entry for (source, engine, weight format), prepared now if it is missing."""
    if weight_format not in kind.weight_formats:
        raise ModelLoadError(
            f"the {kind.name} engine prepares {', '.join(kind.weight_formats)}, "
            f"not {weight_format!r}"
        )
    name = entry_name(source, kind, weight_format)
    final = cache_root / name
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"can't create the cache {str(cache_root)!r}: {exc}") from exc
    lock = FileLock(str(cache_root / f"{name}.lock"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        report(WAITING, None, "waiting")
        lock.acquire()
    try:
        if read_marker(final) is not None:  # another process prepared it while this one waited
            return final
        if final.exists():  # unsealed: what an older version or a crash left, not an entry
            log.warning("removing %s: it has no %s", final, MARKER_FILE)
            shutil.rmtree(final)
        for stale in cache_root.glob(f".{name}.*"):  # left by a killed preparation
            shutil.rmtree(stale, ignore_errors=True)
        log.info("preparing %s for the %s engine (%s) into %s",
                 source.hub_id or source.path, kind.name, weight_format, final)
        work = new_work_dir(cache_root, f".{name}.")
        try:
            write_entry(source, kind, weight_format, work, report)
            publish(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final
    finally:
        lock.release()
