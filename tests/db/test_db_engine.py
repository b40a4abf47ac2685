"""The engine setup: where the database is, how SQLite is configured, how the schema is made."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from db.engine import current_revision, database_url, get_engine, head_revision, init_db
from db.errors import StoreError
from db.models import TraceRow, metadata


def test_default_database_is_a_sqlite_file_in_the_data_folder(tmp_path):
    # tests/conftest.py points R2TA_DATA_DIR at tmp_path / "data"
    assert database_url() == f"sqlite:///{tmp_path / 'data' / 'r2ta.db'}"
    engine = get_engine()
    init_db(engine)
    assert (tmp_path / "data" / "r2ta.db").is_file()
    with engine.connect() as connection:
        pragmas = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 2}


def test_r2ta_database_url_chooses_the_database(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere" / "team.db"
    monkeypatch.setenv("R2TA_DATABASE_URL", f"sqlite:///{target}")
    engine = get_engine()
    init_db(engine)
    engine.dispose()
    assert target.is_file()
    assert not (tmp_path / "data" / "r2ta.db").exists()


def test_postgres_urls_use_psycopg_and_bad_urls_say_what_to_use():
    assert get_engine("postgresql://u@localhost/x").url.drivername == "postgresql+psycopg"
    assert get_engine("postgres://u@localhost/x").url.drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="not a database URL"):
        get_engine("not a url")
    with pytest.raises(StoreError, match="SQLite or PostgreSQL"):
        get_engine("mysql://u@localhost/x")


def test_init_twice_changes_nothing_and_keeps_rows(engine, seed):
    seed(engine)
    assert init_db(engine) == head_revision()
    with Session(engine) as session:
        assert len(session.exec(TraceRow.__table__.select()).all()) == 4
    assert current_revision(engine) == head_revision()


def test_migrations_build_exactly_the_schema_the_models_declare(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_foreign_keys_are_enforced_on_sqlite(sqlite_engine):
    with Session(sqlite_engine) as session:
        session.add(TraceRow(variant_id="no-such-variant", model_id="m", prompt="p", raw_output=""))
        with pytest.raises(IntegrityError):
            session.commit()


def test_a_database_from_a_newer_r2ta_is_refused_not_touched(sqlite_engine):
    with sqlite_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer R2tA"):
        init_db(sqlite_engine)
    assert current_revision(sqlite_engine) == "9999"


def test_a_database_with_foreign_tables_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    engine = get_engine(f"sqlite:///{path}")
    with pytest.raises(StoreError, match="not made by `r2ta db init`"):
        init_db(engine)
    assert inspect(engine).get_table_names() == ["customers"]
    engine.dispose()


def _init_in_child(url: str, barrier, results) -> None:
    engine = get_engine(url)
    barrier.wait()
    try:
        results.put(init_db(engine))
    except Exception as err:  # noqa: BLE001 -- report anything to the parent, which fails the test
        results.put(repr(err))
    finally:
        engine.dispose()


def test_processes_initialising_one_new_database_together_all_succeed(db_url):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(3), context.Queue()
    children = [context.Process(target=_init_in_child, args=(db_url, barrier, results)) for _ in range(3)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == [head_revision()] * 3
    engine = get_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
