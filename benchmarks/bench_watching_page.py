"""What a browser watching a training run costs the run: CPU of the server and the browser, and the run's share.

    python -m benchmarks.bench_watching_page                  # embedded model if seeded, else the tiny one; 60-s windows
    python -m benchmarks.bench_watching_page --model tiny --window 30

A real training job (``r2ta train --detach``: the embedded model's recipe on realistic rows, or the tiny recipe on
smoke rows) runs in a temporary data folder, long enough for every window. Two Streamlit servers serve the app on
that folder: one with Streamlit's own default ``runner.postScriptGC = true`` (a full ``gc.collect(2)`` after every
script run, a fragment's 2-s rerun included, over a heap that holds torch, transformers, pandas and plotly), one
with the project's ``.streamlit/config.toml``. Then, one after the other in the same run, windows of ``--window``
seconds: nobody watching; chromium on the Train page of the first server; on the second; nobody again. Each window
prints the CPU cores the training process got (CPU seconds of it and its children over wall seconds), the
server's and the browser's (chromium and Playwright's driver), the steps the run made, and the server's RSS at the end.

The Train page redraws a going run a quarter of its step apart, 2 to 10 s (:func:`r2ta.timing.refresh_seconds`):
with the embedded model's minute-long CPU steps both servers redraw every 10 s, the tiny model's every 2 s.
On 2 cores the run's cores are the figure that matters: what the watching page takes from them is training time
lost. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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
    try:
        return int(json.loads((run_dir / "status.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def _browser_pids(servers: list[int]) -> set[int]:
    """This process's descendants but the servers: Playwright's driver and the chromium it started."""
    return _tree(os.getpid()) - {os.getpid()} - set().union(*(_tree(s) for s in servers))


def _window(label: str, seconds: float, trainer: int, server: int | None, servers: list[int], run_dir: Path) -> None:
    trainer_pids = _tree(trainer)
    browser_pids = _browser_pids(servers) if server else set()
    before = {pid: _cpu_s(pid) for pid in trainer_pids | browser_pids | ({server} if server else set())}
    step0, t0 = _step(run_dir), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    trainer_pids |= _tree(trainer)
    browser_pids |= _browser_pids(servers) if server else set()

    def cores(pids):
        return sum(_cpu_s(p) - before.get(p, 0.0) for p in pids) / wall

    print(f"  {label:56s} {wall:5.1f} s   training {cores(trainer_pids):4.2f} cores   "
          f"server {cores({server}) if server else 0.0:4.2f}   browser {cores(browser_pids):4.2f}   "
          f"steps +{_step(run_dir) - step0:<3d}" + (f"   server RSS {_rss_mb(server):,.0f} MB" if server else ""),
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("auto", "embedded", "tiny"), default="auto",
                        help="auto: the embedded model when `r2ta seed` fetched it, else the tiny one")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each window")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"no browser at {CHROMIUM} (make setup installs Debian's chromium)")
        sys.exit(0)

    from benchmarks.bench_training import realistic_rows
    from r2ta import jobs
    from r2ta.config import models_dir
    from r2ta.pairs import write_rows
    from training.tiny import smoke_rows

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
        write_rows(sft, Path(tmp) / "sft.jsonl")
        write_rows(dpo, Path(tmp) / "dpo.jsonl")
        run_dir = data / "runs" / "watched"
        subprocess.run([*r2ta, "train", "--sft", str(Path(tmp) / "sft.jsonl"), "--dpo", str(Path(tmp) / "dpo.jsonl"),
                        "--recipe", recipe, "--run-dir", str(run_dir), "--set", f"sft.num_train_epochs={epochs}",
                        "--no-eval", "--no-merge", "--detach"], env=env, check=True, capture_output=True)
        servers = []
        try:
            deadline = time.monotonic() + 600
            while _step(run_dir) < 1:  # past the model's loading and the first step's warm-up
                if time.monotonic() > deadline:
                    sys.exit(f"the run made no step in 10 minutes: {(run_dir / 'train.log').read_text()[-2000:]}")
                time.sleep(1)
            trainer = int(json.loads((run_dir / "status.json").read_text())["pid"])
            servers = [("Streamlit's default (postScriptGC on)", _serve(data, ["--runner.postScriptGC", "true"],
                                                                         Path(tmp) / "default.log")),
                       ("the project's config", _serve(data, [], Path(tmp) / "project.log"))]
            print(f"model {model} ({recipe}); {os.cpu_count()} CPUs; windows of {args.window:.0f} s; "
                  "one after the other:")
            _window("nobody watching", args.window, trainer, None, [], run_dir)
            with sync_playwright() as p:
                for label, server in servers:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.goto(f"{server.url}/train")
                    page.get_by_role("button", name="Cancel run").first.wait_for(timeout=60_000)
                    time.sleep(5)
                    _window(f"Train page watched, {label}", args.window, trainer, server.proc.pid,
                            [s.proc.pid for _, s in servers], run_dir)
                    browser.close()
            _window("nobody watching", args.window, trainer, None, [], run_dir)
        finally:
            if (run_dir / "status.json").is_file():  # stopped before its folder goes, not left training
                jobs.cancel(run_dir, wait_s=30, force=True)
            for _, server in servers:
                server.stop(timeout_s=30)


if __name__ == "__main__":
    main()
