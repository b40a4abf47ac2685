"""What a browser watching a job costs the job: CPU of the server and the browser, and the job's share.

    python -m benchmarks.bench_watching_page                  # embedded model if seeded, else the tiny one; 60-s windows
    python -m benchmarks.bench_watching_page --model tiny --window 30
    python -m benchmarks.bench_watching_page --job evaluate   # the model answering the test split, from the Evaluate page

A real job runs in a temporary data folder, long enough for every window: a training run (``r2ta train --detach``:
the embedded model's recipe on realistic rows, or the tiny recipe on smoke rows), or with ``--job evaluate`` the
Evaluate page's own job (:func:`r2ta.model_jobs.start_model_evaluation`: the model answering the test split). Two
Streamlit servers serve the app on that folder: one with Streamlit's own default ``runner.postScriptGC = true`` (a
full ``gc.collect(2)`` after every script run, a fragment's rerun included, over a heap that holds torch,
transformers, pandas and plotly), one with the project's ``.streamlit/config.toml``. Then, one after the other in the
same run, windows of ``--window`` seconds: nobody watching; chromium on the job's page (Train or Evaluate) of the
first server; of the second; nobody again. Each window prints the CPU cores the job's process got (CPU seconds of it
and its children over wall seconds), the server's and the browser's (chromium and Playwright's driver), the steps or
answers the job made, and the server's RSS at the end.

The Train page redraws a going run a quarter of its step apart, 2 to 10 s (:func:`r2ta.timing.refresh_seconds`), and
a page watching a model's job a quarter of the time between two of its updates (a batch of answers,
:func:`r2ta.timing.job_refresh_seconds`): with the embedded model on a CPU both come to every 10 s, the tiny model's
to every 2 s. On 2 cores the job's cores are the figure that matters: what the watching page takes from them is
the job's time lost. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from r2ta.app_server import CHROMIUM, CHROMIUM_ARGS, AppServer, start_app

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


def _processes() -> dict[int, int]:
    """Every process's parent."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))):
            parents[int(name)] = int(fields[1])
    return parents


def _tree(root: int) -> set[int]:
    parents, tree = _processes(), {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _serve(data: Path, extra: list[str], log: Path) -> AppServer:
    from r2ta.errors import R2taError

    try:
        return start_app(data, log, args=extra)
    except R2taError as err:
        sys.exit(str(err))


def _step(run_dir: Path) -> int:
    """A training run's steps so far."""
    try:
        return int(json.loads((run_dir / "status.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def _answers(job_dir: Path) -> int:
    """A model job's answers so far (of the model it is on)."""
    try:
        return int(json.loads((job_dir / "evaluation" / "status.json").read_text()).get("done") or 0)
    except (OSError, ValueError):
        return 0


def _browser_pids(others: list[int]) -> set[int]:
    """This process's descendants but the servers and the job (an evaluation job is this process's child):
    Playwright's driver and the chromium it started."""
    return _tree(os.getpid()) - {os.getpid()} - set().union(*(_tree(s) for s in others))


def _window(label: str, seconds: float, job: int, server: int | None, servers: list[int], done, unit: str) -> None:
    job_pids = _tree(job)
    browser_pids = _browser_pids([*servers, job]) if server else set()
    before = {pid: _cpu_s(pid) for pid in job_pids | browser_pids | ({server} if server else set())}
    done0, t0 = done(), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    job_pids |= _tree(job)
    browser_pids |= _browser_pids([*servers, job]) if server else set()

    def cores(pids):
        return sum(_cpu_s(p) - before.get(p, 0.0) for p in pids) / wall

    print(f"  {label:62s} {wall:5.1f} s   job {cores(job_pids):4.2f} cores   "
          f"server {cores({server}) if server else 0.0:4.2f}   browser {cores(browser_pids):4.2f}   "
          f"{unit} +{done() - done0:<3d}" + (f"   server RSS {_rss_mb(server):,.0f} MB" if server else ""),
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("auto", "embedded", "tiny"), default="auto",
                        help="auto: the embedded model when `r2ta seed` fetched it, else the tiny one")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each window")
    parser.add_argument("--job", choices=("train", "evaluate"), default="train",
                        help="train: a training run watched from the Train page; evaluate: the model answering the "
                             "test split, watched from the Evaluate page")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"no browser at {CHROMIUM} (make setup installs Debian's chromium)")
        sys.exit(0)

    from benchmarks.bench_training import realistic_rows
    from r2ta import jobs
    from r2ta.config import models_dir
    from r2ta.pairs import write_rows
    from training.tiny import ensure_tiny_llama, smoke_rows

    embedded = models_dir() / "smollm2-135m-instruct"
    model = args.model if args.model != "auto" else ("embedded" if (embedded / "config.json").is_file() else "tiny")
    if model == "embedded" and not (embedded / "config.json").is_file():
        print(f"the embedded model is not in {embedded}; run `r2ta seed` first, or use --model tiny")
        sys.exit(0)
    from playwright.sync_api import sync_playwright

    r2ta = [sys.executable, "-m", "r2ta"]
    with tempfile.TemporaryDirectory(prefix="r2ta-watch-") as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "R2TA_DATA_DIR": str(data)}
        subprocess.run([*r2ta, "seed", "--no-model"], env=env, check=True, capture_output=True)
        if model == "embedded":
            (data / "models").mkdir(parents=True, exist_ok=True)
            (data / "models" / embedded.name).symlink_to(embedded)
            sft, dpo = realistic_rows(24)
            recipe, epochs = "smollm2-135m-cpu", 50
        else:
            sft, dpo = smoke_rows(24)
            recipe, epochs = "tiny-cpu", 100_000
        if args.job == "evaluate":  # the base model answers test variants: the Evaluate page's own job
            from r2ta import model_jobs

            os.environ["R2TA_DATA_DIR"] = str(data)  # this process starts the job, in that folder
            os.environ.pop("R2TA_DATABASE_URL", None)
            name = "embedded" if model == "embedded" else str(ensure_tiny_llama(data / "models" / "tiny-llama"))
            # the tiny model writes to its budget: a long one keeps it going through every window
            started = model_jobs.start_model_evaluation(name, split="test",
                                                        max_new_tokens=None if model == "embedded" else 2048)
            folder, unit, page_path, cancel_button = started.job_dir, "answers", "evaluate", "Cancel the evaluation"
            done = partial(_answers, folder)
            what = f"{'the embedded model' if model == 'embedded' else 'the tiny model'} evaluated on the test split"
        else:
            write_rows(sft, Path(tmp) / "sft.jsonl")
            write_rows(dpo, Path(tmp) / "dpo.jsonl")
            folder = data / "runs" / "watched"
            subprocess.run([*r2ta, "train", "--sft", str(Path(tmp) / "sft.jsonl"), "--dpo", str(Path(tmp) / "dpo.jsonl"),
                            "--recipe", recipe, "--run-dir", str(folder), "--set", f"sft.num_train_epochs={epochs}",
                            "--no-eval", "--no-merge", "--detach"], env=env, check=True, capture_output=True)
            unit, page_path, cancel_button = "steps", "train", "Cancel run"
            done = partial(_step, folder)
            what = f"model {model} ({recipe})"
        servers = []
        try:
            deadline = time.monotonic() + 600
            while done() < 1:  # past the model's loading and the first step's (or batch's) warm-up
                if time.monotonic() > deadline:
                    log = folder / ("evaluation/eval.log" if args.job == "evaluate" else "train.log")
                    sys.exit(f"the job made no progress in 10 minutes: {log.read_text()[-2000:]}")
                time.sleep(1)
            status = folder / ("evaluation/status.json" if args.job == "evaluate" else "status.json")
            job = int(json.loads(status.read_text())["pid"])
            servers = [("Streamlit's default (postScriptGC on)", _serve(data, ["--runner.postScriptGC", "true"],
                                                                         Path(tmp) / "default.log")),
                       ("the project's config", _serve(data, [], Path(tmp) / "project.log"))]
            print(f"{what}; {os.cpu_count()} CPUs; windows of {args.window:.0f} s; one after the other:")
            _window("nobody watching", args.window, job, None, [], done, unit)
            with sync_playwright() as p:
                for label, server in servers:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.goto(f"{server.url}/{page_path}")
                    page.get_by_role("button", name=cancel_button).first.wait_for(timeout=60_000)
                    time.sleep(5)
                    _window(f"{page_path.capitalize()} page watched, {label}", args.window, job, server.proc.pid,
                            [s.proc.pid for _, s in servers], done, unit)
                    browser.close()
            _window("nobody watching", args.window, job, None, [], done, unit)
        finally:
            if args.job == "evaluate":  # stopped before its folder goes, not left generating
                model_jobs.cancel_job(folder)
            elif (folder / "status.json").is_file():
                jobs.cancel(folder, wait_s=30, force=True)
            for _, server in servers:
                server.stop(timeout_s=30)


if __name__ == "__main__":
    main()
