"""``python -m benchmarks``: every benchmark in turn, then which ran, which could not run on this machine and why,
and which failed; only a failure fails the whole."""

from __future__ import annotations

import pytest

import benchmarks
from benchmarks import __main__ as runner


def test_a_benchmark_that_cannot_run_here_is_listed_with_its_reason_and_a_failure_fails_the_run(monkeypatch, capsys):
    from benchmarks import bench_core, bench_quota

    # bench_quota without a writable cgroup (no root, say): its own code path, the model's fetch left out
    monkeypatch.setattr("r2ta.embedded_model.ensure_embedded_model", lambda *a, **k: None)

    def no_cgroup(quota):
        raise PermissionError(13, "Permission denied", "/sys/fs/cgroup/cpu/r2ta-bench")

    monkeypatch.setattr(bench_quota, "_make_cgroup", no_cgroup)
    monkeypatch.setattr(bench_core, "main", lambda argv: print("core figures"))
    assert runner.main(["bench_core", "bench_quota"]) == 0
    out, err = capsys.readouterr()
    assert "=== bench_core ===\ncore figures" in out
    assert out.rstrip().endswith(
        "=== summary ===\nran: bench_core\nnot run here: bench_quota (cannot make a cgroup with a CPU quota here "
        "([Errno 13] Permission denied: '/sys/fs/cgroup/cpu/r2ta-bench'): run as root on a machine with a writable "
        "cgroup mount)")
    assert "not run here: cannot make a cgroup" in err  # said where it happened, too

    def broken(argv):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bench_core, "main", broken)
    assert runner.main(["bench_core", "bench_quota"]) == 1
    out, err = capsys.readouterr()
    assert out.rstrip().endswith("failed: bench_core") and "bench_core failed: RuntimeError: out of memory" in err
    # a benchmark that exits with another status, or returns one (bench_db), failed too
    monkeypatch.setattr(bench_core, "main", lambda argv: 1)
    assert runner.main(["bench_core"]) == 1
    monkeypatch.setattr(bench_core, "main", lambda argv: (_ for _ in ()).throw(SystemExit("bad --flag")))
    assert runner.main(["bench_core"]) == 1


def test_a_name_that_is_no_benchmark_is_refused_naming_those_there_are(capsys):
    assert runner.main(["bench_nothing"]) == 2
    assert "no benchmark bench_nothing; there are bench_checkpoint, bench_core" in capsys.readouterr().err


def test_cannot_run_here_says_why_and_exits_with_its_own_status(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmarks.cannot_run_here("no GPU")
    assert exc.value.code == benchmarks.CANNOT_RUN_HERE != 1
    assert capsys.readouterr().err == "not run here: no GPU\n"
