"""One engine setup for every caller: the app, the CLI, the pipeline, training jobs.

``R2TA_DATABASE_URL`` chooses the database; without it the store is the SQLite
file ``<data dir>/r2ta.db``. SQLite connections get WAL (readers never block the
writer, and a killed writer leaves the file consistent), enforced foreign keys,
``synchronous=FULL`` (a saved review survives a power cut, not only a crash) and
a 30 s busy timeout (a second writer waits instead of failing). PostgreSQL
works through the same code by URL (``postgresql+psycopg://user@host/db``;
a bare ``postgresql://`` is taken to mean psycopg 3).

The schema is created and upgraded only by the Alembic revisions in
``db/migrations`` (:func:`init_db`), never by ``metadata.create_all``: a
database always records which revision made it, so an older one can be
upgraded in place.

Use short-lived sessions: ``with Session(engine) as session: ...``. This module
must not import anything from :mod:`r2ta` beyond ``errors`` and ``config``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import StaticPool

from db.errors import StoreError
from r2ta.config import data_dir

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
# Any constant: serialises concurrent `init_db` calls on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x72327461


def database_url() -> str:
    """``R2TA_DATABASE_URL``, else the SQLite file in the data folder."""
    url = os.environ.get("R2TA_DATABASE_URL", "").strip()
    return url or f"sqlite:///{data_dir() / 'r2ta.db'}"


def describe_url(url: str) -> str:
    """The URL with any password hidden, fit to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _normalise(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_memory_sqlite(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def get_engine(url: str | None = None, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (default :func:`database_url`); does not create the schema (see :func:`init_db`)."""
    url = _normalise(url or database_url())
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"R2TA_DATABASE_URL is not a database URL: {url!r}; use e.g. "
            "sqlite:///path/r2ta.db or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if backend == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, json_serializer=_json_dumps)
    raise StoreError(f"unsupported database {backend!r} in {describe_url(url)}: R2tA runs on SQLite or PostgreSQL")


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    memory = _is_memory_sqlite(url)
    kwargs: dict = {"echo": echo, "json_serializer": _json_dumps}
    if memory:
        # One connection shared by every session, or each would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(make_url(url).database)
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API objects)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not memory:
            _set_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    return engine


def _set_wal(cursor) -> None:  # noqa: ANN001 (DB-API cursor)
    # Switching a new file to WAL needs an exclusive lock, and SQLite can answer
    # SQLITE_BUSY there without consulting the busy handler (several processes
    # opening one brand-new file at once); so wait here, as the busy timeout would.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def _sqlite_init_lock(engine: Engine) -> Iterator[None]:
    """An OS lock on ``<db file>.init-lock`` held while one process creates or upgrades the file.

    SQLite's own locks cannot cover the moment a brand-new file is first opened
    and switched to WAL; this one does. Where ``fcntl`` is missing (Windows) the
    SQLite locks alone are used.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path = Path(f"{make_url(str(engine.url)).database}.init-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(connection=None) -> Config:  # noqa: ANN001
    """Alembic's configuration for db/migrations, bound to ``connection`` (no alembic.ini involved)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def is_known_revision(revision: str) -> bool:
    """Whether this code has the migration ``revision`` (False for one made by a newer R2tA)."""
    return revision in {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "db/migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database (or one R2tA never initialised)."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as err:
        raise StoreError(f"cannot open the database {describe_url(str(engine.url))}: {err.orig}") from None


def init_db(engine: Engine, revision: str = "head") -> str:
    """Create the schema, or upgrade it in place, to ``revision`` (default: the newest). Idempotent.

    Returns the revision the database is at afterwards. Runs in one transaction
    where the backend allows it, so a failed upgrade leaves the old schema, and
    under a lock, so that processes starting together (app workers, the CLI)
    take turns and the later ones find the work done.
    """

    def upgrade(config: Config) -> None:
        _check_upgradable(config.attributes["connection"], str(engine.url))
        command.upgrade(config, revision)

    file_sqlite = engine.dialect.name == "sqlite" and not _is_memory_sqlite(str(engine.url))
    with _sqlite_init_lock(engine) if file_sqlite else contextlib.nullcontext():
        current_revision(engine)  # a clear error if the database cannot be opened at all
        _migrate(engine, upgrade)
        return current_revision(engine) or ""


def downgrade_db(engine: Engine, revision: str) -> str | None:
    """Take the schema back to ``revision`` ("base": no tables). Drops data that later revisions added."""
    _migrate(engine, lambda config: command.downgrade(config, revision))
    return current_revision(engine)


def _check_upgradable(connection: Connection, url: str) -> None:
    # Runs inside the migration's lock: what it sees cannot change before the upgrade.
    known = MigrationContext.configure(connection).get_current_revision()
    if known is not None and not is_known_revision(known):
        raise StoreError(
            f"the database {describe_url(url)} is at schema revision {known!r}, "
            "which this version of R2tA does not know: it was made by a newer R2tA; upgrade R2tA"
        )
    if known is None:
        names = set(inspect(connection).get_table_names()) - {"alembic_version"}  # left empty by a downgrade
        if names:
            raise StoreError(
                f"the database {describe_url(url)} holds tables ({', '.join(sorted(names)[:5])}) "
                "but no R2tA schema revision: it was not made by `r2ta db init`; "
                "point R2TA_DATABASE_URL at an empty database"
            )


def _migrate(engine: Engine, step: Callable[[Config], None]) -> None:
    if engine.dialect.name == "sqlite":
        _migrate_sqlite(engine, step)
    else:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            step(alembic_config(connection))


def _migrate_sqlite(engine: Engine, step: Callable[[Config], None]) -> None:
    # Python's sqlite3 runs DDL outside any transaction by default; take manual
    # control so that the whole upgrade is one BEGIN IMMEDIATE ... COMMIT: a
    # crash mid-upgrade leaves the previous schema, and two processes
    # initialising the same file queue up instead of both creating tables.
    with engine.connect() as connection:
        dbapi = connection.connection.dbapi_connection
        previous = dbapi.isolation_level
        dbapi.isolation_level = None
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                step(alembic_config(connection))
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
        finally:
            dbapi.isolation_level = previous
