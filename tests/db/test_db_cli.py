"""``r2ta db init|upgrade|status|export|import`` through the real CLI entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

from r2ta.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "r2ta_v1.sqlite"


def test_init_twice_then_status_export_and_import(tmp_path, monkeypatch, capsys, seed):
    assert main(["db", "init"]) == 0
    assert "created the database" in capsys.readouterr().out
    assert main(["db", "init"]) == 0
    assert "nothing to do" in capsys.readouterr().out

    from db.engine import get_engine

    engine = get_engine()
    seed(engine)
    engine.dispose()
    assert main(["db", "status"]) == 0
    status = capsys.readouterr().out
    assert "(newest)" in status
    assert [
        line.split() for line in status.splitlines() if line.strip().startswith(("variant ", "proposal ", "pending "))
    ] == [["variant", "4"], ["proposal", "4"], ["pending", "4"]]

    assert main(["db", "export", str(tmp_path / "backup")]) == 0
    assert "exported" in capsys.readouterr().out
    assert main(["db", "import", str(tmp_path / "backup")]) == 2
    assert "error: refusing to import" in capsys.readouterr().err

    monkeypatch.setenv("R2TA_DATABASE_URL", f"sqlite:///{tmp_path / 'restored.db'}")
    assert main(["db", "import", str(tmp_path / "backup")]) == 0
    assert "imported 19 rows" in capsys.readouterr().out
    assert main(["db", "export", str(tmp_path / "again")]) == 0
    for path in (tmp_path / "backup").iterdir():
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes()


def test_upgrade_an_old_database_and_refuse_a_missing_one(tmp_path, monkeypatch, capsys):
    assert main(["db", "upgrade"]) == 2
    assert "create it with `r2ta db init`" in capsys.readouterr().err
    old = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, old)
    monkeypatch.setenv("R2TA_DATABASE_URL", f"sqlite:///{old}")
    assert main(["db", "status"]) == 0
    assert "older than" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "from schema 0001 to" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "nothing to upgrade" in capsys.readouterr().out
