"""The app served on a free port of this machine, for the programs that drive it in a real browser.

The browser tests (``tests/e2e``), the screenshot script (``scripts/screenshot_pages.py``) and the watching-page
benchmark (``benchmarks/bench_watching_page.py``) each start ``streamlit run app.py`` on a data folder of their own
and open it in Debian's chromium: :func:`start_app` starts the server and waits until it answers, and
:data:`CHROMIUM` / :data:`CHROMIUM_ARGS` are the browser they launch (never one downloaded at run time).

No streamlit import: the server is a child process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from r2ta.errors import R2taError

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/install-system-deps.sh)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# As `make run` serves it, and no file watcher: a source file changed beside a running app breaks its reruns
# (.streamlit/config.toml says the same; given here too, for a server started from another folder's config).
SERVER_ARGS = ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    log: Path  # the server's output

    def stop(self, timeout_s: float = 10) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_app(data_dir: str | Path, log: str | Path, *, args: Sequence[str] = (), timeout_s: float = 90) -> AppServer:
    """``streamlit run app.py`` on ``data_dir`` (its own SQLite store: ``R2TA_DATABASE_URL`` is not passed on) on a
    free port, its output in ``log``, ``args`` after :data:`SERVER_ARGS`; returns once it answers its health check.
    A server that exits or does not answer in ``timeout_s`` is stopped and raises R2taError with its log's end."""
    log = Path(log)
    env = {**os.environ, "R2TA_DATA_DIR": str(Path(data_dir).resolve())}
    env.pop("R2TA_DATABASE_URL", None)
    port = free_port()
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), *SERVER_ARGS, *args],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    server = AppServer(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2).read() == b"ok":
                return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise R2taError(f"streamlit did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.5)
