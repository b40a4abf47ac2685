"""Run every benchmark module in this folder, one after the other, then say which ran, which could not run on this
machine (and why), and which failed. Exit status 1 only when one failed."""

import importlib
import pkgutil
import sys

import benchmarks


def main(names: list[str] | None = None) -> int:
    ran, not_here, failed = [], [], []
    modules = sorted((m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")))
    unknown = sorted(set(names or []) - set(modules))
    if unknown:
        print(f"no benchmark {', '.join(unknown)}; there are {', '.join(modules)}", file=sys.stderr)
        return 2
    for name in names or modules:
        print(f"\n=== {name} ===", flush=True)
        try:
            code = importlib.import_module(f"benchmarks.{name}").main([])  # each on its own defaults
            (failed if code not in (0, None) else ran).append(name)
        except benchmarks.CannotRunHere as exc:  # it said why, and exited
            not_here.append((name, exc.reason))
        except SystemExit as exc:
            (ran if exc.code in (0, None) else failed).append(name)
        except Exception as err:  # noqa: BLE001 - one broken benchmark does not stop the others
            print(f"{name} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            failed.append(name)
    print(f"\n=== summary ===\nran: {', '.join(ran) or 'none'}", flush=True)
    for name, reason in not_here:
        print(f"not run here: {name} ({reason})", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or None))
