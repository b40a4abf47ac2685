"""Benchmarks that print figures (speed, memory, tokens). Run all with ``python -m benchmarks``."""

import sys

# The exit status of a benchmark that cannot measure on this machine (no root for a cgroup, a GPU where it
# measures a CPU's cores, the embedded model not fetched yet): ``python -m benchmarks`` lists it as not run here,
# with the reason it printed, instead of as failed.
CANNOT_RUN_HERE = 3


class CannotRunHere(SystemExit):
    """A benchmark's exit when it cannot measure on this machine; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(CANNOT_RUN_HERE)
        self.reason = reason


def cannot_run_here(reason: str) -> None:
    """Say why this benchmark cannot measure here, on stderr, and exit with :data:`CANNOT_RUN_HERE`."""
    print(f"not run here: {reason}", file=sys.stderr, flush=True)
    raise CannotRunHere(reason)
