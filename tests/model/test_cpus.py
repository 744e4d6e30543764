"""Threads follow the container's CPU quota (a fake cgroup here) and the workers sharing it."""

import pytest

from kogpt2.model import cpus


@pytest.fixture
def affinity(monkeypatch):
    """This process may run on 8 CPUs, as a container on a big host often sees."""
    monkeypatch.setattr(cpus, "available_cpus", lambda: 8)


def v2(root, text):
    (root / "cpu.max").write_text(text)
    return root


def v1(root, quota, period, directory="cpu,cpuacct"):
    (root / directory).mkdir()
    (root / directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / directory / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize("text, workers, threads", [
    ("200000 100000\n", 1, 2),  # 2 CPUs
    ("200000 100000\n", 2, 1),
    ("150000 100000\n", 1, 1),  # 1.5 CPUs: a second thread would be throttled
    ("50000 100000\n", 1, 1),  # half a CPU: still one thread
    ("400000 100000\n", 3, 1),
    ("max 100000\n", 1, 8),  # no quota: the affinity
    ("max 100000\n", 3, 2),
    ("1600000 100000\n", 1, 8),  # a quota above the affinity: the affinity
])
def test_cgroup_v2_quota_and_workers(tmp_path, affinity, text, workers, threads):
    choice = cpus.choose_threads(None, workers, v2(tmp_path, text))
    assert choice.threads == threads


def test_the_reason_names_the_quota_file_and_the_workers(tmp_path, affinity):
    choice = cpus.choose_threads(None, 2, v2(tmp_path, "300000 100000\n"))
    assert (choice.threads, choice.reason) == (1, (
        f"cgroup {tmp_path / 'cpu.max'} is 300000 100000: 3 CPUs of the 8 in its affinity, "
        "shared by 2 workers"))
    assert cpus.choose_threads(None, 1, tmp_path / "none").reason == (
        "8 CPUs in this process's affinity, shared by 1 worker")
    assert cpus.choose_threads(4, 2, tmp_path).reason == "KOGPT2_THREADS sets it"


@pytest.mark.parametrize("directory", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(tmp_path, affinity, directory):
    assert cpus.choose_threads(None, 1, v1(tmp_path, 300000, 100000, directory)).threads == 3


def test_cgroup_v1_without_quota(tmp_path, affinity):
    assert cpus.choose_threads(None, 2, v1(tmp_path, -1, 100000)).threads == 4


def test_an_unreadable_quota_is_no_quota(tmp_path, affinity):
    assert cpus.choose_threads(None, 1, v2(tmp_path, "garbage")).threads == 8


def test_the_setting_wins(tmp_path, affinity):
    assert cpus.choose_threads(3, 4, v2(tmp_path, "100000 100000")).threads == 3
