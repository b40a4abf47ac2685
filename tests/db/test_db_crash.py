"""A reviewer process killed (SIGKILL) in the middle of saving leaves the SQLite file whole and consistent."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from db.engine import get_engine, init_db
from db.models import STATUS_BY_DECISION

WRITER = Path(__file__).with_name("review_writer.py")


def _run_and_kill(url: str, after: int) -> list[int]:
    """Start the writer, let it commit ``after`` reviews, SIGKILL it; return the ids it reported."""
    child = subprocess.Popen([sys.executable, str(WRITER), url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        reported = [int(child.stdout.readline()) for _ in range(after)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        reported += [int(line) for line in child.stdout.read().split()]  # printed before the kill landed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return reported


def test_a_killed_writer_loses_no_committed_review_and_leaves_no_half_row(tmp_path, seed):
    path = tmp_path / "r2ta.db"
    url = f"sqlite:///{path}"
    engine = get_engine(url)
    init_db(engine)
    seed(engine)
    engine.dispose()

    reported: list[int] = []
    for after in (17, 40, 3):  # three kills at different moments; each restart reloads the versions
        reported += _run_and_kill(url, after)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
            ids = [row[0] for row in db.execute("SELECT id FROM review ORDER BY id")]
            # every review the writer saw committed is there; at most one more committed unreported
            assert set(reported) <= set(ids)
            assert len(ids) - len(reported) in (0, 1)
            for proposal_id, version, status in db.execute("SELECT id, version, status FROM proposal"):
                reviews = db.execute(
                    "SELECT proposal_version, decision, steps, reason FROM review WHERE proposal_id = ? ORDER BY id",
                    (proposal_id,),
                ).fetchall()
                # the version bump and the review row were one transaction: both or neither
                assert [r[0] for r in reviews] == list(range(1, version))
                assert status == (STATUS_BY_DECISION[reviews[-1][1]] if reviews else "pending")
                for _, decision, steps, reason in reviews:
                    assert reason.startswith("review ")
                    if decision == "edit":
                        assert len(json.loads(steps)) == 200
                    else:
                        assert steps is None
    assert len(reported) >= 60
