"""A database made at the first schema revision is upgraded in place without losing a row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select
from sqlmodel import Session

from db.engine import current_revision, downgrade_db, get_engine, head_revision, init_db
from db.queries import categories_of, create_review, get_next_review_item, list_review_queue

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "r2ta_v1.sqlite"


def _rows(engine) -> dict[str, list[dict]]:
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            table.name: [
                dict(r) for r in connection.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            ]
            for table in metadata.sorted_tables
            if table.name != "alembic_version"
        }


# Columns later revisions add to first-revision tables, with the value an upgraded row gets.
ADDED_COLUMNS = {"trace": {"verdict_forced_at": None}, "evaluation": {"settings": None}}  # 0003, 0004


def _check_upgraded(engine, expected: dict[str, list[dict]]) -> None:
    rows = _rows(engine)
    for table, wanted in expected.items():
        wanted = [{**row, **ADDED_COLUMNS.get(table, {})} for row in wanted]
        assert rows[table] == sorted(wanted, key=lambda r: r["id"]), f"rows of {table} changed"
    # the new revision's index was filled from every variant's ground truth, in order
    with Session(engine) as session:
        assert categories_of([v["id"] for v in expected["variant"]], session=session) == {
            v["id"]: [m["category"] for m in v["mistakes"]] for v in expected["variant"]
        }
        assert [i.variant_id for i in list_review_queue(session=session, status=None, category="cardinality")] == [
            "company-0001"
        ]
        # and the upgraded store keeps working: the pending item can be decided
        item = get_next_review_item(session=session, category="participation")
        create_review(
            session=session,
            proposal_id=item.proposal.id,
            reviewer="cy",
            decision="accept",
            expected_version=item.proposal.version,
        )


def test_the_committed_fixture_is_a_first_revision_database_with_rows(tmp_path, v1_fixture_module):
    copy = tmp_path / FIXTURE.name
    shutil.copy(FIXTURE, copy)  # never upgrade the committed file itself
    engine = get_engine(f"sqlite:///{copy}")
    assert current_revision(engine) == "0001"
    rows = _rows(engine)
    engine.dispose()
    assert "variant_mistake" not in rows
    assert {t: len(r) for t, r in rows.items()} == {t: len(r) for t, r in v1_fixture_module.V1_ROWS.items()}


def test_upgrading_the_first_revision_fixture_keeps_every_row(tmp_path, v1_fixture_module):
    copy = tmp_path / FIXTURE.name
    shutil.copy(FIXTURE, copy)  # never upgrade the committed file itself
    engine = get_engine(f"sqlite:///{copy}")
    assert init_db(engine) == head_revision() != "0001"
    _check_upgraded(engine, v1_fixture_module.V1_ROWS)
    engine.dispose()


@pytest.mark.postgres
def test_upgrading_a_first_revision_postgres_database_keeps_every_row(postgres_url, v1_fixture_module):
    v1_fixture_module.build_v1(postgres_url)
    engine = get_engine(postgres_url)
    assert current_revision(engine) == "0001"
    init_db(engine)
    _check_upgraded(engine, v1_fixture_module.V1_ROWS)
    engine.dispose()


def test_downgrade_then_upgrade_round_trips(tmp_path, v1_fixture_module):
    copy = tmp_path / FIXTURE.name
    shutil.copy(FIXTURE, copy)  # never upgrade the committed file itself
    engine = get_engine(f"sqlite:///{copy}")
    init_db(engine)
    assert downgrade_db(engine, "0001") == "0001"
    rows = _rows(engine)
    assert "variant_mistake" not in rows
    assert all("verdict_forced_at" not in row for row in rows["trace"])
    assert all("settings" not in row for row in rows["evaluation"])
    init_db(engine)
    _check_upgraded(engine, v1_fixture_module.V1_ROWS)
    engine.dispose()
