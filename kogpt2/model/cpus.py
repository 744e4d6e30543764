"""How many threads an engine gets: the CPUs this process may really use, shared among the
server's worker processes.

A container sees every CPU of its host (os.cpu_count, and often its affinity too) while its
CPU quota lets it run far fewer: threads beyond the quota only get throttled. The quota is the
cgroup's: v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), v1 `cpu.cfs_quota_us` and
`cpu.cfs_period_us` (quota -1: none).
"""

import math
from dataclasses import dataclass
from pathlib import Path

from .seam import available_cpus

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_DIRECTORIES = ("cpu", "cpu,cpuacct", "")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # for the log: what the number comes from


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> tuple[float, str] | None:
    """The CPUs the container's quota allows (e.g. 1.5), and the file that says so; None
    without a quota."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            if quota == "max":
                return None
            return int(quota) / int(period), f"cgroup {v2} is {quota} {period}"
        for directory in V1_DIRECTORIES:
            quota_file = root / directory / "cpu.cfs_quota_us"
            if quota_file.is_file():
                quota = int(quota_file.read_text())
                period = int((root / directory / "cpu.cfs_period_us").read_text())
                if quota <= 0:
                    return None
                return quota / period, f"cgroup {quota_file} is {quota} per {period}"
    except (OSError, ValueError, ZeroDivisionError):  # unreadable or odd: no quota known
        return None
    return None


def choose_threads(configured: int | None, workers: int = 1,
                   cgroup_root: Path = CGROUP_ROOT) -> ThreadChoice:
    """`configured` if set; else the CPUs the quota and affinity allow (whole ones: a thread
    on a fraction of a CPU is throttled) divided among `workers` processes, at least 1."""
    if configured:
        return ThreadChoice(configured, "KOGPT2_THREADS sets it")
    affinity = available_cpus()
    cpus, why = affinity, f"{affinity} CPUs in this process's affinity"
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None and limit[0] < affinity:
        cpus = max(1, math.floor(limit[0]))
        why = f"{limit[1]}: {limit[0]:g} CPUs of the {affinity} in its affinity"
    threads = max(1, cpus // max(1, workers))
    return ThreadChoice(threads, f"{why}, shared by {workers} worker"
                                 f"{'' if workers == 1 else 's'}")
