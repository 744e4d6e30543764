"""Prepare an engine's own copy of a transformers model once, into a cache, and reuse it.

An entry is keyed on the source (hub id and commit, or path with its files' sizes and times),
the engine, the weight format and the versions of the libraries that read it. It is written
into a temporary directory and renamed into place, so a killed preparation never leaves a
half-written entry; a file lock makes a second process wait for the first one's entry instead
of preparing the same model again.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from . import engines
from .seam import ModelLoadError, short_reason
from .source import Source
from .vocab import tokenizer_config, write_metadata

log = logging.getLogger(__name__)

# Bumped when what prepare() writes changes shape, so old entries aren't read as new ones.
FORMAT_VERSION = 1
Report = Callable[[str, float | None], None]  # a stage in words, and how far it is (0–1)


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
    return path if path.is_dir() else None


def prepare_command(kind, weight_format: str) -> str:
    return (
        f"python scripts/convert.py SRC OUT --engine {kind.name} --weight-format {weight_format}"
        " (where torch and transformers are installed), then set KOGPT2_MODEL=OUT"
    )


def write_entry(source: Source, kind, weight_format: str, out: Path, report: Report) -> None:
    """Write `kind`'s copy of `source` into the empty directory `out`."""
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
    )


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
        report("waiting for another process preparing the same model", None)
        lock.acquire()
    try:
        if final.is_dir():  # another process prepared it while this one waited
            return final
        for stale in cache_root.glob(f".{name}.*"):  # left by a killed preparation
            shutil.rmtree(stale, ignore_errors=True)
        log.info("preparing %s for the %s engine (%s) into %s",
                 source.hub_id or source.path, kind.name, weight_format, final)
        work = new_work_dir(cache_root, f".{name}.")
        try:
            write_entry(source, kind, weight_format, work, report)
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final
    finally:
        lock.release()
