"""r2ta.cpu: the cores a process may use under a cpuset or a container's CPU quota, and how their free ones are
counted; against laid-out cgroup trees, and (where this machine lets a test make a cgroup) a real one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from r2ta import cpu


def _tree(tmp_path: Path, files: dict[str, str], proc_cgroup: str) -> tuple[str, str]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return str(root), str(proc)


def test_a_cgroup_v2_quota_is_the_tightest_of_the_folder_and_its_parents(tmp_path):
    root, proc = _tree(tmp_path, {
        "cgroup.controllers": "cpu io memory",
        "system.slice/cpu.max": "max 100000",
        "system.slice/docker-1.scope/cpu.max": "150000 100000",  # docker run --cpus 1.5
        "system.slice/docker-1.scope/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n",
    }, "0::/system.slice/docker-1.scope\n")
    assert cpu.cpu_quota(root, proc) == pytest.approx(1.5)
    assert cpu.usable_cores(1.5, set(range(8))) == 2  # rounded up, never the host's 8
    assert cpu.cgroup_usage_reader(root, proc)() == pytest.approx(2.5)
    Path(root, "system.slice/cpu.max").write_text("100000 100000")  # a parent limit binds the child
    assert cpu.cpu_quota(root, proc) == pytest.approx(1.0)
    assert cpu.usable_cores(1.0, set(range(8))) == 1


def test_a_container_that_sees_its_own_cgroup_at_the_root(tmp_path):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "200000 100000",
                                  "cpu.stat": "usage_usec 7\n"}, "0::/\n")
    assert cpu.cpu_quota(root, proc) == pytest.approx(2.0)
    # /proc/self/cgroup names a path the container's mount does not hold: the mount's own files count
    Path(proc).write_text("0::/../../kubepods/pod-1\n")
    assert cpu.cpu_quota(root, proc) == pytest.approx(2.0)


def test_no_quota_none_readable_or_garbage_means_none(tmp_path):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "max 100000"}, "0::/\n")
    assert cpu.cpu_quota(root, proc) is None
    Path(root, "cpu.max").write_text("lots of cpu")
    assert cpu.cpu_quota(root, proc) is None
    Path(root, "cpu.max").write_text("0 100000")
    assert cpu.cpu_quota(root, proc) is None
    assert cpu.cgroup_usage_reader(root, proc) is None  # no cpu.stat
    assert cpu.cpu_quota(str(tmp_path / "nowhere"), str(tmp_path / "no-proc")) is None
    assert cpu.usable_cores(None, {0, 1, 2}) == 3
    assert cpu.usable_cores(None, None) == (os.cpu_count() or 1)
    assert cpu.usable_cores(0.2, {0, 1}) == 1  # a fifth of a core still runs one thread


def test_a_cgroup_v1_quota_and_usage(tmp_path):
    root, proc = _tree(tmp_path, {
        "cpu,cpuacct/kubepods/pod-1/cpu.cfs_quota_us": "250000",
        "cpu,cpuacct/kubepods/pod-1/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/kubepods/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/kubepods/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/kubepods/pod-1/cpuacct.usage": "3000000000",
    }, "4:memory:/kubepods/pod-1\n3:cpu,cpuacct:/kubepods/pod-1\n0::/\n")
    assert cpu.cpu_quota(root, proc) == pytest.approx(2.5)
    assert cpu.cgroup_usage_reader(root, proc)() == pytest.approx(3.0)
    Path(root, "cpu,cpuacct/kubepods/pod-1/cpu.cfs_quota_us").write_text("-1")
    assert cpu.cpu_quota(root, proc) is None


def test_the_free_cores_under_a_quota_are_the_quota_less_the_groups_busy_cores():
    from r2ta.backends import idle_cores

    clock = {"t": 100.0, "used": 40.0}

    def usage():
        return clock["used"]

    ticks = cpu.quota_ticks(1.5, 2, usage, clock=lambda: clock["t"])
    samples = []

    def step(seconds, busy):  # the group, this process included, keeps `busy` cores busy
        samples.append(ticks())
        clock["t"] += seconds
        clock["used"] += seconds * busy
        samples.append(ticks())

    step(10, 1.0)
    reads = iter(samples)
    assert idle_cores(0.0, ticks=lambda: next(reads), cores=2) == pytest.approx(0.5)
    samples.clear()
    step(10, 1.8)  # a burst over the quota: none free, never below zero
    reads = iter(samples)
    assert idle_cores(0.0, ticks=lambda: next(reads), cores=2) == 0.0


def test_a_cpuset_counts_its_own_cpus_lines(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  400 0 400 800 0 0 0 0 0 0\n"
        "cpu0 100 0 100 200 0 0 0 0 0 0\n"
        "cpu1 0 0 0 400 0 0 0 0 0 0\n"
        "cpu2 300 0 300 0 0 0 0 0 0 0\n"
        "cpu3 0 0 0 200 0 0 0 0 0 0\n"
        "intr 12345\n")
    assert cpu.stat_ticks(None, str(stat)) == (800, 1600)
    assert cpu.stat_ticks({1, 3}, str(stat)) == (600, 600)
    with pytest.raises(ValueError, match="no line"):
        cpu.stat_ticks({9}, str(stat))
    scope = cpu.core_scope(root=str(tmp_path / "no-cgroup"), proc_cgroup=str(tmp_path / "none"), stat=str(stat),
                           cpus={1, 3}, online=4)
    assert (scope.name, scope.cores, scope.ticks()) == ("cpuset", 2, (600, 600))
    whole = cpu.core_scope(root=str(tmp_path / "no-cgroup"), proc_cgroup=str(tmp_path / "none"), stat=str(stat),
                           cpus={0, 1, 2, 3}, online=4)
    assert (whole.name, whole.cores, whole.ticks()) == ("machine", 4, (800, 1600))


def test_a_quota_tighter_than_the_cpuset_counts_the_groups_usage(tmp_path):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "100000 100000",
                                  "cpu.stat": "usage_usec 1000000\n"}, "0::/\n")
    scope = cpu.core_scope(root=root, proc_cgroup=proc, cpus=set(range(16)), online=16)
    assert (scope.name, scope.cores) == ("quota", 1)
    idle, total = scope.ticks()
    assert idle < total  # quota x now - 1 s, against cores x now
    # a quota looser than the cpuset binds nothing: the cpuset's lines count
    Path(root, "cpu.max").write_text("800000 100000")
    assert cpu.core_scope(root=root, proc_cgroup=proc, cpus={0, 1}, online=16).name == "cpuset"


def test_the_hardware_box_says_what_limits_the_cores():
    from training.hardware import Hardware

    assert cpu.limit_note(1.5, set(range(64)), 64) == "a CPU quota of 1.5 cores on a machine of 64"
    assert cpu.limit_note(None, {2, 3}, 16) == "a cpuset of 2 of the machine's 16 CPUs"
    assert cpu.limit_note(8.0, {2, 3}, 16) == "a cpuset of 2 of the machine's 16 CPUs"  # the quota binds nothing
    assert cpu.limit_note(None, set(range(4)), 4) == ""
    boxed = Hardware("cpu", 0, "cpu", False, 2, None, cpu.limit_note(1.5, set(range(64)), 64))
    assert boxed.describe() == "CPU only (2 cores: a CPU quota of 1.5 cores on a machine of 64)"
    assert Hardware("cpu", 0, "cpu", True, 2, None).describe() == "CPU only (2 cores, native bf16)"


def test_this_machines_scope_reads(monkeypatch):
    from r2ta.backends import cpu_threads, idle_cores

    scope = cpu.core_scope()
    assert scope.cores == cpu.usable_cores() >= 1
    idle, total = scope.ticks()
    assert total > 0
    assert 0.0 <= idle_cores(0.2) <= scope.cores + 1e-9
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= cpu_threads() <= scope.cores


def test_a_training_run_starts_on_no_more_threads_than_it_may_use():
    import torch
    from types import SimpleNamespace

    from training.callbacks import FreeCoresCallback

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        callback = FreeCoresCallback(10.0, cores=1, ticks=lambda: (0, 0))  # a one-core quota on a bigger host
        callback.on_train_begin(None, SimpleNamespace(global_step=0), None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _writable_cgroup() -> list[Path] | None:
    """New child cgroups, the first with a one-core CPU quota (and, on cgroup v1 with cpuacct mounted apart, one
    under cpuacct), made by this test; None if it cannot make them."""
    from benchmarks.bench_quota import _make_cgroup

    try:
        return _make_cgroup(1.0, prefix="r2ta-test")[0]
    except OSError:
        return None


def test_a_process_in_a_real_one_core_quota_uses_one_core():
    """Where this machine lets the test make a cgroup (root, a writable cgroup mount: this project's CI and dev
    machines), a child process moved into one with a one-core quota sees one usable core and the quota scope,
    and its model jobs take one thread, whatever the host has."""
    made = _writable_cgroup()
    if made is None:
        pytest.skip("no writable cgroup with a CPU controller here (needs root and a cgroup mount)")
    join = "".join(f"open({str(folder / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n" for folder in made)
    code = (
        "import os, sys, torch\n" + join +
        "from r2ta import cpu\n"
        "from r2ta.backends import cpu_threads\n"
        "scope = cpu.core_scope()\n"
        "from training.hardware import detect_hardware\n"
        "print(cpu.cpu_quota(), cpu.usable_cores(), scope.name, scope.cores, cpu_threads())\n"
        "print(detect_hardware().describe())\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    finally:
        for folder in made:
            try:
                folder.rmdir()  # empty once the child has exited
            except OSError:
                pass
    assert out.returncode == 0, out.stderr[-2000:]
    numbers, described = out.stdout.strip().splitlines()[-2:]
    quota, usable, name, cores, threads = numbers.split()
    assert (float(quota), int(usable), int(cores), int(threads)) == (1.0, 1, 1, 1)
    if (os.cpu_count() or 1) > 1:
        assert name == "quota"  # the group's own CPU time against the quota, not the host's idle cores
        assert described.startswith(f"CPU only (1 core: a CPU quota of 1 core on a machine of {os.cpu_count()}")


def test_the_quota_benchmark_runs_both_settings_in_a_real_cgroup(tmp_path, capsys):
    """benchmarks/bench_quota.py's plumbing on the tiny model (its figures need the real one): each setting in
    its own child process in a new one-core cgroup, the host's threads against the quota's."""
    from benchmarks import bench_quota
    from training.tiny import ensure_tiny_llama

    if (os.cpu_count() or 1) < 2:
        pytest.skip("a one-core quota binds nothing on a one-CPU machine")
    made = _writable_cgroup()
    if made is None:
        pytest.skip("no writable cgroup with a CPU controller here (needs root and a cgroup mount)")
    for folder in made:
        folder.rmdir()
    tiny = ensure_tiny_llama(tmp_path / "tiny-llama")
    bench_quota.main(["--quota", "1", "--variants", "2", "--batch-size", "2", "--max-new-tokens", "4",
                      "--model", str(tiny)])
    out = capsys.readouterr().out
    assert f"threads a batch [{os.cpu_count()}]" in out.split("host's cores:")[1].splitlines()[0], out
    assert "threads a batch [1]" in out.split("the quota's:")[1].splitlines()[0], out
    assert re.search(r"the quota's threads: [0-9.]+x the time of the host's; the same text for 2 of 2 prompts", out)
    with pytest.raises(SystemExit, match="binds nothing"):
        bench_quota.main(["--quota", str(os.cpu_count()), "--model", str(tiny)])
