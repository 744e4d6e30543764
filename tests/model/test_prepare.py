"""A prepared copy is written once, whole or not at all, and keyed on what it was made from."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kogpt2.model import engines, prepare
from kogpt2.model.source import local_source

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = next(kind for kind in engines.PREFERRED if kind.installed())

# A process preparing `source` into `cache`; it tells each stage on stdout and, at the stage
# named in argv[3], waits for a line on stdin: the test decides when it goes on (or kills it).
PREPARER = r"""
import sys
from pathlib import Path
from kogpt2.model import engines, prepare
from kogpt2.model.source import local_source

source, cache, pause_at, engine = sys.argv[1:5]

def report(stage, fraction=None, step=None):
    print(stage, flush=True)
    if stage.startswith(pause_at):
        sys.stdin.readline()

path = prepare.prepare(local_source(source), engines.ENGINES[engine], "int8", Path(cache), report)
print("done", path, flush=True)
"""


def preparer(source, cache, pause_at="never"):
    return subprocess.Popen(
        [sys.executable, "-c", PREPARER, str(source), str(cache), pause_at, DEFAULT.name],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def read_until(process, prefix: str) -> list[str]:
    lines = []
    while not lines or not lines[-1].startswith(prefix):
        line = process.stdout.readline()
        assert line, f"the preparer ended before {prefix!r}: {lines}"
        lines.append(line.strip())
    return lines


def entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]


def stage_of_work() -> str:
    # The stage during which the engine writes its files (before the rename into place).
    # ("converting to CTranslate2 int8", "converting to OpenVINO")
    return {"ctranslate2": "converting", "openvino": "converting"}.get(DEFAULT.name, "saving")


def test_a_killed_preparation_leaves_no_cache_entry_and_the_next_one_cleans_up(
    tiny_model_dir, tmp_path
):
    cache = tmp_path / "cache"
    process = preparer(tiny_model_dir, cache, pause_at="saving")
    read_until(process, "saving")  # the engine's files are written, not yet renamed
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")]  # work in progress
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert entries(cache) == []
    again = preparer(tiny_model_dir, cache)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    [entry] = entries(cache)
    assert f"done {entry}" in out
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]


def test_two_processes_prepare_the_same_model_once(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    first = preparer(tiny_model_dir, cache, pause_at=stage_of_work())
    read_until(first, stage_of_work())  # the first holds the lock, mid-way
    second = preparer(tiny_model_dir, cache)
    assert read_until(second, "waiting")[-1] == (
        "waiting for another process preparing the same model"
    )
    first.stdin.write("go\n")
    first.stdin.flush()
    out_first, _ = first.communicate(timeout=300)
    out_second, _ = second.communicate(timeout=300)
    [entry] = entries(cache)
    assert out_first.strip().endswith(f"done {entry}")
    assert out_second.strip().endswith(f"done {entry}")
    # Only the first did the work: the second found the entry when the lock came free.
    assert stage_of_work() not in out_second and "saving" not in out_second


def test_the_entry_records_where_it_came_from(tiny_model_dir, tmp_path):
    entry = prepare.prepare(local_source(str(tiny_model_dir)), DEFAULT, "int8", tmp_path,
                            lambda stage, fraction=None: None)
    # Readable by every user, as the image's model is by Lambda's (not root).
    assert entry.stat().st_mode & 0o777 == 0o755
    metadata = json.loads((entry / "kogpt2-model.json").read_text())
    assert metadata["source"] == str(tiny_model_dir.resolve())
    assert (metadata["engine"], metadata["weight_format"]) == (DEFAULT.name, "int8")
    assert metadata["max_positions"] == 1024 and metadata["versions"] == DEFAULT.versions()
    assert engines.kind_of(entry) is DEFAULT


def test_the_key_follows_the_source_files_engine_and_format(tiny_model_dir, tmp_path):
    model = Path(__import__("shutil").copytree(tiny_model_dir, tmp_path / "model"))
    name = prepare.entry_name(local_source(str(model)), DEFAULT, "int8")
    assert prepare.entry_name(local_source(str(model)), DEFAULT, "int8") == name
    assert prepare.entry_name(local_source(str(model)), DEFAULT, "float32") != name
    assert prepare.entry_name(local_source(str(model)), engines.TRANSFORMERS, "int8") != name
    config = model / "config.json"
    config.write_text(config.read_text() + " ")  # a changed file: a new entry
    assert prepare.entry_name(local_source(str(model)), DEFAULT, "int8") != name


def test_a_hub_snapshot_is_keyed_on_its_commit(tmp_path):
    from kogpt2.model.source import Source

    first = Source(tmp_path, "skt/kogpt2-base-v2", "a" * 40)
    moved = Source(tmp_path / "elsewhere", "skt/kogpt2-base-v2", "a" * 40)
    newer = Source(tmp_path, "skt/kogpt2-base-v2", "b" * 40)
    name = prepare.entry_name(first, DEFAULT, "int8")
    assert prepare.entry_name(moved, DEFAULT, "int8") == name
    assert prepare.entry_name(newer, DEFAULT, "int8") != name


@pytest.mark.parametrize("weight_format", ["int4", "fp16"])
def test_an_unknown_weight_format_is_refused(tiny_model_dir, tmp_path, weight_format):
    from kogpt2.model import ModelLoadError

    with pytest.raises(ModelLoadError, match="prepares"):
        prepare.prepare(local_source(str(tiny_model_dir)), DEFAULT, weight_format, tmp_path,
                        lambda stage, fraction=None: None)
