"""Which cores this process may use, and how to count the ones other processes leave free.

``os.cpu_count()`` counts the machine's cores, and in a container the machine is the host. Two limits give a
process fewer:

* a **cpuset** (``docker run --cpuset-cpus``, ``taskset``, a Kubernetes static CPU policy): it runs on those
  CPUs only. ``os.sched_getaffinity`` says which.
* a **CPU quota** (``docker run --cpus``, a Kubernetes CPU limit; cgroup v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``): it may run on every CPU, but only for so many core-seconds a
  second, and the kernel stops the whole group for the rest of each period once they are spent.

Threads beyond either oversubscribe, as two jobs on the same cores do (docs/measured/threads-follow-idle-cores-*),
and under a quota also idle in throttled periods. :func:`usable_cores` is the smaller of the two.

The free cores are counted within the same limit (:func:`core_scope`): under a quota, the group's own CPU time
(cgroup ``cpu.stat`` ``usage_usec``, v1 ``cpuacct.usage``) against the quota — the host's idle cores say nothing
of it; under a cpuset, the ``/proc/stat`` lines of its CPUs; else the machine's line. Each scope reads as
``(idle, total)`` ticks, so :func:`r2ta.backends.idle_cores` and :class:`training.callbacks.FreeCoresCallback`
count them one way.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
PROC_STAT = "/proc/stat"


def _cgroup_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (``cpu``, ``cpuacct``; ``""`` for the cgroup v2 hierarchy) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        text = Path(proc_cgroup).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths.setdefault(controller, parts[2] or "/")
    return paths


def _up_to_root(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and each parent up to the mount (a parent's limit binds its children).
    A path that is not there (a container that sees its own cgroup at the mount) starts at the mount."""
    folders = []
    relative = Path(path.lstrip("/"))
    if ".." in relative.parts:  # a path outside this namespace's view: only the mount is ours to read
        relative = Path(".")
    while True:
        folders.append(mount / relative)
        if relative == Path("."):
            return [folder for folder in folders if folder.is_dir()] or [mount]
        relative = relative.parent


def _v1_folder(root: Path, controller: str) -> Path | None:
    for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        if (root / name).is_dir():
            return root / name
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def cpu_quota(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> float | None:
    """The cores' worth of CPU time a second this process's cgroup may use (the tightest of its folder and its
    parents'), or None where no quota is set or none can be read."""
    paths, root_path = _cgroup_paths(proc_cgroup), Path(root)
    quotas = []
    if (root_path / "cgroup.controllers").exists():  # cgroup v2, unified at the root
        for folder in _up_to_root(root_path, paths.get("", "/")):
            fields = (_read(folder / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    quota, period = int(fields[0]), int(fields[1])
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    quotas.append(quota / period)
    else:  # cgroup v1 (or hybrid: the cpu controller on v1)
        mount = _v1_folder(root_path, "cpu")
        if mount is not None:
            for folder in _up_to_root(mount, paths.get("cpu", "/")):
                quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                try:
                    quota_us, period_us = int(quota or ""), int(period or "")
                except ValueError:
                    continue
                if quota_us > 0 and period_us > 0:
                    quotas.append(quota_us / period_us)
    return min(quotas) if quotas else None


def cgroup_usage_reader(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Callable[[], float] | None:
    """A function returning the CPU seconds this process's cgroup has used, or None where they cannot be read."""
    paths, root_path = _cgroup_paths(proc_cgroup), Path(root)
    if (root_path / "cgroup.controllers").exists():
        stat = _up_to_root(root_path, paths.get("", "/"))[0] / "cpu.stat"

        def v2() -> float:
            for line in stat.read_text(encoding="ascii").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
            raise ValueError(f"{stat}: no usage_usec")

        reader = v2
    else:
        mount = _v1_folder(root_path, "cpuacct")
        if mount is None:
            return None
        usage = _up_to_root(mount, paths.get("cpuacct", "/"))[0] / "cpuacct.usage"

        def v1() -> float:
            return int(usage.read_text(encoding="ascii").strip()) / 1e9

        reader = v1
    try:
        reader()
    except (OSError, ValueError):
        return None
    return reader


def affinity() -> set[int] | None:
    """The CPUs this process may run on, or None where the system does not say (not Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cores(quota: float | None | bool = True, cpus: set[int] | None | bool = True) -> int:
    """The cores this process may keep busy: the CPUs it may run on, fewer under a CPU quota (rounded up), at
    least one. ``quota`` and ``cpus`` default to this process's own (:func:`cpu_quota`, :func:`affinity`)."""
    return _usable(cpu_quota() if quota is True else quota, affinity() if cpus is True else cpus)


def _usable(quota: float | None, cpus: set[int] | None) -> int:
    cores = len(cpus) if cpus else (os.cpu_count() or 1)
    if quota:
        cores = min(cores, math.ceil(quota - 1e-9))
    return max(1, cores)


def limit_note(quota: float | None | bool = True, cpus: set[int] | None | bool = True,
               online: int | None = None) -> str:
    """What limits this process to fewer cores than the machine has, in words ("" when nothing does)."""
    cpus = affinity() if cpus is True else cpus
    quota = cpu_quota() if quota is True else quota
    online = online or os.cpu_count() or 1
    available = len(cpus) if cpus else online
    if quota is not None and quota < available:
        return f"a CPU quota of {quota:g} core{'' if quota == 1 else 's'} on a machine of {online}"
    if available < online:
        return f"a cpuset of {available} of the machine's {online} CPUs"
    return ""


def stat_ticks(cpus: set[int] | None = None, stat: str = PROC_STAT) -> tuple[int, int]:
    """(idle, total) jiffies since boot, idle and iowait of user .. steal: of the machine (the ``cpu`` line), or
    summed over the lines of ``cpus``."""
    with open(stat, encoding="ascii") as handle:
        lines = handle.read().splitlines()
    idle = total = 0
    counted = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu"):
            continue
        if cpus is None:
            if name != "cpu":
                continue
        elif name == "cpu" or int(name[3:]) not in cpus:
            continue
        fields = [int(x) for x in rest.split()[:8]]
        idle, total, counted = idle + fields[3] + fields[4], total + sum(fields), counted + 1
        if cpus is None:
            break
    if not counted:
        raise ValueError(f"{stat}: no line for {'the machine' if cpus is None else sorted(cpus)}")
    return idle, total


@dataclass
class CoreScope:
    """Where the free cores are counted: ``cores`` of them, read as ``(idle, total)`` ticks by ``ticks()``."""

    name: str  # "machine" | "cpuset" | "quota"
    cores: int
    ticks: Callable[[], tuple[float, float]] = field(repr=False)


def quota_ticks(quota: float, cores: int, usage: Callable[[], float],
                clock: Callable[[], float] = time.monotonic) -> Callable[[], tuple[float, float]]:
    """Ticks under a CPU quota: total ``cores`` a second of wall time, idle what the quota leaves of it after the
    group's CPU time. Over a window, idle / total x cores = quota - the group's busy cores (below 0 while it runs
    over the quota on a burst)."""

    def ticks() -> tuple[float, float]:
        now, used = clock(), usage()
        return quota * now - used, cores * now

    return ticks


def core_scope(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP, stat: str = PROC_STAT,
               cpus: set[int] | None | bool = True, online: int | None = None) -> CoreScope:
    """How this process counts free cores (see the module): under a quota that binds tighter than its cpuset,
    the cgroup's usage; under a cpuset smaller than the machine, its CPUs' lines; else the machine's line."""
    cpus = affinity() if cpus is True else cpus
    online = online or os.cpu_count() or 1
    quota = cpu_quota(root, proc_cgroup)
    cores = _usable(quota, cpus)
    if quota is not None and quota < (len(cpus) if cpus else online):
        usage = cgroup_usage_reader(root, proc_cgroup)
        if usage is not None:
            return CoreScope("quota", cores, quota_ticks(quota, cores, usage))
    if cpus and len(cpus) < online:
        return CoreScope("cpuset", cores, lambda: stat_ticks(cpus, stat))
    return CoreScope("machine", cores, lambda: stat_ticks(None, stat))
