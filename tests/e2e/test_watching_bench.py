"""benchmarks/bench_watching_page.py's plumbing on the tiny model, and the server setting it measures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from r2ta.config import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_the_app_skips_streamlits_forced_collection_after_each_script_run():
    """A page watching a job reruns every 2 s; Streamlit's default full gc.collect(2) after each rerun took a tenth
    of a core from the training run (the benchmark's figures, docs/measured/watching-page-2026-12-06.txt)."""
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    # and reloads no changed source file: a re-imported db.models defines its tables twice (an error on every rerun)
    assert config["server"]["fileWatcherType"] == "none"


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is absent (make setup)")
@pytest.mark.parametrize("job, page, unit", [("train", "Train", "steps"), ("evaluate", "Evaluate", "answers")])
def test_the_benchmark_watches_a_real_job_from_both_servers_and_prints_every_window(tmp_path, job, page, unit):
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_watching_page", "--model", "tiny", "--window", "3",
                           "--job", job],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "R2TA_DATA_DIR": str(tmp_path / "unused")})
    assert done.returncode == 0, done.stdout + done.stderr
    windows = re.findall(r"^  (.+?)\s+\d+\.\d s   job (\d\.\d\d) cores   server (\d\.\d\d)   browser (\d\.\d\d)   "
                         rf"{unit} \+(\d+)", done.stdout, flags=re.M)
    assert [w[0] for w in windows] == ["nobody watching", f"{page} page watched, Streamlit's default (postScriptGC on)",
                                       f"{page} page watched, the project's config", "nobody watching"], done.stdout
    assert all(float(w[1]) > 0 for w in windows), done.stdout  # the job worked in every window
    assert all(float(w[3]) > 0 for w in windows[1:3]), done.stdout  # a browser was there, and was measured
    assert not list((tmp_path / "unused").glob("runs/*")), "the benchmark works in its own temporary folder"
    assert not list((tmp_path / "unused").glob("evaluations/*"))
