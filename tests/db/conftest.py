"""Fixtures of the data-layer tests: a fresh database per test, on SQLite and on PostgreSQL.

PostgreSQL: the server at ``R2TA_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own
schema with a random name (alone on its search path, so it behaves as an
empty database), dropped afterwards. Where no server answers the
tests skip with the reason, unless ``R2TA_REQUIRE_POSTGRES`` is set (CI): then
``scripts/ensure-postgres.sh`` is run to install and start one, and if that
fails too, they fail.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from db.engine import get_engine, init_db
from db.loading import load_dataset
from store_samples import VARIANTS, base_dict, variant_dict

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
PG_ADMIN_URL = os.environ.get("R2TA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_REQUIRED = os.environ.get("R2TA_REQUIRE_POSTGRES", "") not in ("", "0")


def _pg_problem() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _ensure_postgres(tmp_root: Path) -> str:
    """Run scripts/ensure-postgres.sh once across xdist workers; returns its output."""
    with open(tmp_root / "r2ta-ensure-postgres.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _pg_problem() is None:
            return "already up"
        done = subprocess.run(
            [str(ROOT / "scripts" / "ensure-postgres.sh")], capture_output=True, text=True, timeout=600
        )
        return (done.stdout + done.stderr).strip()


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory) -> str:
    problem = _pg_problem()
    if problem and PG_REQUIRED:
        log = _ensure_postgres(tmp_path_factory.getbasetemp().parent)
        problem = _pg_problem()
        if problem:
            pytest.fail(
                f"R2TA_REQUIRE_POSTGRES is set but no PostgreSQL answers at {PG_ADMIN_URL} ({problem}), "
                f"even after scripts/ensure-postgres.sh: {log[-800:]}"
            )
    if problem:
        pytest.skip(
            f"no PostgreSQL server answers at {PG_ADMIN_URL} ({problem}); start one with "
            "scripts/ensure-postgres.sh (with R2TA_REQUIRE_POSTGRES=1 this is a failure, as in CI)"
        )
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url) -> Iterator[str]:
    """A new, empty PostgreSQL schema with a random name, as the only one on the URL's search path; dropped after.

    A schema rather than a database: creating and dropping one takes milliseconds,
    a database a good part of a second (a checkpoint each), and nothing in R2tA
    names a schema, so each test sees a database of its own.
    """
    name = f"r2ta_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(postgres_admin_url)
    user = info.get("user") or "postgres"
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or "5432"
    dbname = info.get("dbname") or "test"
    password = f":{info['password']}" if info.get("password") else ""
    try:
        yield f"postgresql+psycopg://{user}{password}@{host}:{port}/{dbname}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute("SET lock_timeout = '20s'")  # a leaked connection fails the test instead of hanging it
            admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'r2ta.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """An empty database URL, once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def _engine(url: str) -> Iterator[Engine]:
    engine = get_engine(url)
    init_db(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    """An initialised engine on each backend."""
    yield from _engine(db_url)


@pytest.fixture
def sqlite_engine(sqlite_url) -> Iterator[Engine]:
    yield from _engine(sqlite_url)


@pytest.fixture
def seed() -> Callable[[Engine], dict]:
    """Loads the small store and gives every variant one trace and one pending proposal.

    Returns {variant id: proposal id}.
    """
    from db.queries import create_proposal, create_trace

    def _seed(engine: Engine) -> dict:
        with Session(engine) as session:
            load_dataset(
                [base_dict("company"), base_dict("library")],
                [variant_dict(v, b, s, c, seed=n) for n, (v, b, s, c) in enumerate(VARIANTS)],
                session=session,
            )
        proposals = {}
        for variant_id, *_ in VARIANTS:
            with Session(engine) as session:
                trace = create_trace(
                    session=session,
                    variant_id=variant_id,
                    model_id="smollm2",
                    prompt=[{"role": "user", "content": f"audit {variant_id}"}],
                    raw_output="STEP 1: ...",
                    steps=["..."],
                    verdict={"mistakes": []},
                )
                proposal = create_proposal(
                    session=session, trace_id=trace.id, auditor_id="grounded", steps=["fixed"], verdict={"mistakes": []}
                )
                proposals[variant_id] = proposal.id
        return proposals

    return _seed


@pytest.fixture(scope="session")
def v1_fixture_module():
    """tests/fixtures/make_db_v1.py, imported from its path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_db_v1", FIXTURES / "make_db_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
