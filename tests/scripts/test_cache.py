"""scripts/cache.py: the prepared copies listed with their status, and the stale ones pruned."""

import json
import shutil

import pytest
from cache import main
from filelock import FileLock

from kogpt2.model import engines, prepare
from kogpt2.model.source import local_source
from kogpt2.model.vocab import read_metadata, write_metadata

pytestmark = pytest.mark.skipif(not engines.OPENVINO.installed(), reason="needs openvino")


def copy_entry(template, cache, name, **changes):
    entry = shutil.copytree(template, cache / name)
    if changes:
        write_metadata(entry, **{**read_metadata(entry), **changes})
    return entry


@pytest.fixture
def cache(tmp_path, tiny_model_dir, tiny_ov_dir, monkeypatch):
    """The configured model's entry (in use) among the kinds of directory a cache collects."""
    monkeypatch.setenv("KOGPT2_MODEL", str(tiny_model_dir))
    monkeypatch.delenv("KOGPT2_ENGINE", raising=False)  # auto: openvino int8
    root = tmp_path / "cache"
    root.mkdir()
    name = prepare.entry_name(local_source(str(tiny_model_dir)), engines.OPENVINO, "int8")
    copy_entry(tiny_ov_dir, root, name)
    copy_entry(tiny_ov_dir, root, "openvino-int8-00000000000000aa",
               versions={"openvino": "2025.0.0"})
    copy_entry(tiny_ov_dir, root, "openvino-float32-00000000000000bb", weight_format="float32")
    copy_entry(tiny_ov_dir, root, "openvino-int8-00000000000000cc",
               source_key={"path": str(tmp_path / "gone"), "files": []})
    unsealed = copy_entry(tiny_ov_dir, root, "openvino-int8-00000000000000dd")
    (unsealed / prepare.MARKER_FILE).unlink()
    copy_entry(tiny_ov_dir, root, "openvino-int8-00000000000000ee" + prepare.SET_ASIDE_SUFFIX)
    (root / ".openvino-int8-00000000000000ff.x1y2").mkdir()  # a killed preparation's
    (root / ".openvino-int8-0000000000000011.z3").mkdir()  # one running now (its lock held)
    lock = FileLock(str(root / "openvino-int8-0000000000000011.lock"))
    lock.acquire()
    yield root, name
    lock.release()


def listed(capsys, root) -> dict[str, str]:
    assert main(["--cache-dir", str(root), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    assert header == ["NAME", "ENGINE", "FORMAT", "SIZE", "VERSIONS", "SOURCE", "STATUS"]
    status_at = lines[1].index("STATUS")
    return {line.split()[0]: line[status_at:] for line in lines[2:]}


def test_list_says_what_each_entry_is(cache, capsys, tiny_model_dir):
    root, in_use = cache
    statuses = listed(capsys, root)
    installed = engines.OPENVINO.versions()["openvino"]
    assert statuses == {
        in_use: "in use",
        "openvino-int8-00000000000000aa":
            f"stale: made with openvino 2025.0.0 (installed {installed})",
        "openvino-float32-00000000000000bb": "unused",
        "openvino-int8-00000000000000cc": f"stale: its source {root.parent / 'gone'} is gone",
        "openvino-int8-00000000000000dd": f"incomplete: no {prepare.MARKER_FILE}",
        "openvino-int8-00000000000000ee.broken":
            "set aside: failed to load; it was prepared again",
        ".openvino-int8-00000000000000ff.x1y2":
            "incomplete: left by a preparation that did not finish",
        ".openvino-int8-0000000000000011.z3": "preparing: being written now",
    }


def test_a_row_names_engine_format_size_versions_and_source(cache, capsys, tiny_model_dir):
    root, in_use = cache
    main(["--cache-dir", str(root), "list"])
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(f"cache {root}: 8 entries, ")
    assert f"the configured model ({tiny_model_dir}) uses {in_use}" in first
    (row,) = [line for line in out.splitlines() if line.startswith(in_use)]
    size = sum(p.stat().st_size for p in (root / in_use).rglob("*") if p.is_file())
    versions = ", ".join(f"{lib} {v}" for lib, v in engines.OPENVINO.versions().items())
    assert row.split()[1:3] == ["openvino", "int8"]
    assert f"{size / 1e6:.0f} MB" in row and f"{versions}, format {prepare.FORMAT_VERSION}" in row
    assert str(tiny_model_dir.resolve()) in row


def test_prune_removes_only_what_can_never_load_again(cache, capsys):
    root, in_use = cache
    assert main(["--cache-dir", str(root), "prune", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert said.count("would remove ") == 5
    assert len([p for p in root.iterdir() if p.is_dir()]) == 8
    assert main(["--cache-dir", str(root), "prune"]) == 0
    said = capsys.readouterr().out
    assert "removed openvino-int8-00000000000000aa (" in said
    assert said.count("removed ") == 5
    assert "kept 1 in use, 1 unused, 1 preparing (--unused removes unused ones)" in said
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted([
        in_use, "openvino-float32-00000000000000bb", ".openvino-int8-0000000000000011.z3"])
    assert main(["--cache-dir", str(root), "prune", "--unused"]) == 0
    assert "removed openvino-float32-00000000000000bb" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted([
        in_use, ".openvino-int8-0000000000000011.z3"])


def test_a_new_format_version_makes_every_older_entry_stale(cache, capsys, monkeypatch):
    root, in_use = cache
    monkeypatch.setattr(prepare, "FORMAT_VERSION", prepare.FORMAT_VERSION + 1)
    statuses = listed(capsys, root)
    new = prepare.FORMAT_VERSION
    assert statuses[in_use] == f"stale: format {new - 1}; this version writes {new}"
    assert statuses["openvino-float32-00000000000000bb"].startswith("stale: format")
    main(["--cache-dir", str(root), "prune"])
    assert in_use in capsys.readouterr().out
    assert not (root / in_use).exists()


def test_an_empty_cache_is_said_plainly(tmp_path, capsys):
    assert main(["--cache-dir", str(tmp_path / "none"), "list"]) == 0
    assert capsys.readouterr().out.startswith(f"cache {tmp_path / 'none'}: 0 entries, 0 kB")


def test_the_record_of_an_entry_holds_its_format_and_source_key(tiny_ov_dir, tiny_model_dir):
    metadata = json.loads((tiny_ov_dir / "kogpt2-model.json").read_text())
    assert metadata["format_version"] == prepare.FORMAT_VERSION
    assert metadata["source_key"] == local_source(str(tiny_model_dir)).identity()
