"""Export → import → export gives byte-identical files, on SQLite, PostgreSQL and across them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlmodel import Session

from db.engine import current_revision, get_engine, head_revision, init_db
from db.errors import ImportRefused, StoreError
from db.portability import export_database, import_database, table_counts
from db.queries import (
    add_run_examples,
    append_run_metrics,
    create_evaluation,
    create_preference_pair,
    create_review,
    create_trace,
    create_training_run,
    get_proposal,
    list_reviews,
    update_training_run,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "r2ta_v1.sqlite"


def _fill(engine, seed) -> None:
    """Rows in every table, with the awkward values: unicode, NULLs, floats, nested JSON."""
    proposals = seed(engine)
    with Session(engine) as session:
        create_trace(
            session=session,
            variant_id="company-1",
            model_id="sft-1",
            prompt="Prüfe «EMPLOYEE» — 社員",
            raw_output='line\nbreak "quoted" \\ backslash',
            steps=None,
            verdict=None,
            parse_errors=["no verdict"],
            latency_s=0.1 + 0.2,
        )
        accepted = create_review(
            session=session, proposal_id=proposals["company-1"], reviewer="Zoë", decision="accept", expected_version=1
        )
        create_review(
            session=session,
            proposal_id=proposals["library-1"],
            reviewer="bo",
            decision="edit",
            expected_version=1,
            steps=["é"],
            verdict={"mistakes": [{"category": "weak_entity", "elements": ["X"]}]},
        )
        pair = create_preference_pair(
            session=session,
            review_id=accepted.id,
            prompt=[{"role": "user", "content": "ü"}],
            chosen=[{"role": "assistant", "content": "a"}],
            rejected=[{"role": "assistant", "content": "b"}],
        )
        run = create_training_run(
            session=session,
            stage="sft",
            base_model="smollm2",
            config={"lr": 1e-4, "nested": {"b": 1, "a": [1.5, None]}},
        )
        update_training_run(run.id, session=session, status="running")
        append_run_metrics(run.id, session=session, step=1, metrics={"loss": 1 / 3})
        add_run_examples(run.id, session=session, kind="sft", review_ids=[accepted.id])
        dpo = create_training_run(session=session, stage="dpo", base_model="sft-1", config={}, parent_run_id=run.id)
        add_run_examples(dpo.id, session=session, kind="dpo", pair_ids=[pair.id])
        create_evaluation(
            session=session,
            model_id="sft-1",
            split="test",
            metrics={"micro_f1": 2 / 3},
            run_id=run.id,
            results=[{"variant_id": "company-2", "predicted": [], "metrics": {"exact": True}}],
            settings={"max_new_tokens": 320, "tokens_per_construct": 20, "verdict_tokens": None, "other_budget": 0},
        )


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_export_import_export_is_byte_identical(tmp_path, engine, seed):
    _fill(engine, seed)
    first = export_database(engine, tmp_path / "a")
    assert all(n > 0 for n in first.values()), first
    copy = get_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    import_database(copy, tmp_path / "a")
    export_database(copy, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    line = (tmp_path / "a" / "trace.jsonl").read_text(encoding="utf-8").splitlines()[-1]
    assert "«EMPLOYEE» — 社員" in line and '"steps":null' in line and '"latency_s":0.30000000000000004' in line
    # the copy keeps working: new rows get fresh ids, after the imported ones
    with Session(copy) as session:
        review = create_review(
            session=session,
            proposal_id=2,
            reviewer="new",
            decision="reject",
            expected_version=get_proposal(2, session=session).version,
        )
        assert review.id == max(r.id for r in list_reviews(session=session))
        assert review.id > 2
    copy.dispose()


@pytest.mark.postgres
def test_sqlite_to_postgres_and_back_is_byte_identical(tmp_path, sqlite_engine, postgres_url, seed):
    _fill(sqlite_engine, seed)
    export_database(sqlite_engine, tmp_path / "from-sqlite")
    pg = get_engine(postgres_url)
    import_database(pg, tmp_path / "from-sqlite")
    export_database(pg, tmp_path / "from-postgres")
    assert _files(tmp_path / "from-sqlite") == _files(tmp_path / "from-postgres")
    with Session(pg) as session:  # sequences were moved past the imported ids
        trace = create_trace(session=session, variant_id="company-1", model_id="m", prompt="p", raw_output="")
        assert trace.id == 6
    pg.dispose()


def test_import_into_a_non_empty_database_is_refused_and_changes_nothing(tmp_path, sqlite_engine, seed):
    _fill(sqlite_engine, seed)
    export_database(sqlite_engine, tmp_path / "dump")
    before = table_counts(sqlite_engine)
    with pytest.raises(ImportRefused, match=r"not empty \(rows: .*review 2,"):
        import_database(sqlite_engine, tmp_path / "dump")
    assert table_counts(sqlite_engine) == before


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "review.jsonl").write_text('{"id": 1}\n'), "does not match its checksum"),
        (lambda d: (d / "variant.jsonl").unlink(), "lacks variant.jsonl"),
        (lambda d: (d / "manifest.json").unlink(), "not an R2tA export"),
        (
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace(f'"revision": "{head_revision()}"', '"revision": "zz99"')
            ),
            "does not know",
        ),
    ],
)
def test_a_damaged_export_is_refused_and_leaves_the_target_empty(tmp_path, sqlite_engine, seed, damage, message):
    _fill(sqlite_engine, seed)
    export_database(sqlite_engine, tmp_path / "dump")
    damage(tmp_path / "dump")
    target = get_engine(f"sqlite:///{tmp_path / 'target.db'}")
    with pytest.raises(ImportRefused, match=message):
        import_database(target, tmp_path / "dump")
    assert not any(table_counts(target).values())
    target.dispose()


def test_export_never_writes_into_a_folder_of_other_files(tmp_path, sqlite_engine):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not empty"):
        export_database(sqlite_engine, tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"
    with pytest.raises(StoreError, match="no R2tA schema"):
        export_database(get_engine(f"sqlite:///{tmp_path / 'empty.db'}"), tmp_path / "x")


def test_an_export_from_an_older_schema_imports_and_is_upgraded(tmp_path, v1_fixture_module):
    old = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, old)
    old_engine = get_engine(f"sqlite:///{old}")
    export_database(old_engine, tmp_path / "v1")
    old_engine.dispose()
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["revision"] == "0001"
    target = get_engine(f"sqlite:///{tmp_path / 'new.db'}")
    init_db(target)  # an empty database at the newest schema is fine too
    counts = import_database(target, tmp_path / "v1")
    assert current_revision(target) == head_revision()
    assert counts == {t: len(r) for t, r in v1_fixture_module.V1_ROWS.items()}
    assert table_counts(target)["variant_mistake"] == 4
    target.dispose()
