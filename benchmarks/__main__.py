"""Run every benchmark module in this folder, one after the other."""

import importlib
import pkgutil
import sys

import benchmarks

failed = []
for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
    if not info.name.startswith("bench_"):
        continue
    print(f"\n=== {info.name} ===", flush=True)
    module = importlib.import_module(f"benchmarks.{info.name}")
    try:
        module.main()
    except SystemExit as exc:  # a benchmark that cannot run here says why and exits
        if exc.code not in (0, None):
            failed.append(info.name)
sys.exit(1 if failed else 0)
