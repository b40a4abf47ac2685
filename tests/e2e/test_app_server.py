"""r2ta.app_server, which the browser tests, the screenshot script and the watching-page benchmark serve the app
with: a server that cannot start says why and is not left running; the screenshot script draws a page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2ta.app_server import CHROMIUM, start_app
from r2ta.config import PROJECT_ROOT
from r2ta.errors import R2taError

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_server_that_exits_is_an_error_with_its_log(tmp_path):
    with pytest.raises(R2taError, match=r"streamlit did not start: (?s:.*)no-such-option"):
        start_app(tmp_path / "data", tmp_path / "server.log", args=["--server.no-such-option", "1"], timeout_s=60)


def test_a_server_that_does_not_answer_in_time_is_stopped(tmp_path, monkeypatch):
    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(R2taError, match="streamlit did not start"):
        start_app(tmp_path / "data", tmp_path / "server.log", timeout_s=0)
    assert started and started[0].poll() is not None  # stopped, not left serving


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is absent (make setup)")
def test_the_screenshot_script_draws_a_page_of_a_data_folder(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "R2TA_DATA_DIR": str(data)}
    env.pop("R2TA_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "r2ta", "seed", "--no-model"], env=env, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "scripts/screenshot_pages.py", "--data-dir", str(data), "--prefix", "t-",
                           "--out", str(tmp_path / "shots"), "Datasets"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shot = tmp_path / "shots" / "t-datasets.png"
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
