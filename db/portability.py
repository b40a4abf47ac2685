"""Backup and portability: the whole store as plain JSONL, one file per table.

``export_database`` writes ``<table>.jsonl`` for every table (rows sorted by
primary key, keys sorted, compact separators, UTF-8, one row per line) and a
``manifest.json`` naming the schema revision, each file's row count and
SHA-256. Nothing in it depends on the time or the backend, so
export → import → export gives byte-identical files, from SQLite to PostgreSQL
and back.

``import_database`` loads such a folder into an *empty* database (it refuses
anything else), checks every file against the manifest first, inserts all rows
in one transaction (a failure leaves the database empty), then upgrades the
schema to the newest revision, so a backup made by an older R2tA restores into
a newer one.

Both work on the tables as the database has them (reflected), not as
:mod:`db.models` declares them, so that an export made at an older revision
means exactly what that revision stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, MetaData, Table, func, select, text

from db.engine import current_revision, describe_url, downgrade_db, init_db, is_known_revision
from db.errors import ImportRefused, StoreError

EXPORT_FORMAT = "r2ta-db-export"
EXPORT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_BATCH = 1000


def _tables(engine: Engine) -> list[Table]:
    """The store's tables in foreign-key order (parents first), as the database has them."""
    metadata = MetaData()
    metadata.reflect(engine)
    tables = [t for t in metadata.sorted_tables if t.name != "alembic_version"]
    for table in tables:
        for column in table.columns:
            if isinstance(column.type, JSON):
                # Reflection loses none_as_null: a NULL must come back as NULL, not as JSON 'null'.
                column.type = JSON(none_as_null=bool(column.nullable))
    return tables


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _line(row: dict) -> str:
    return json.dumps(
        {k: _encode(v) for k, v in row.items()}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )


def _sort_key(table: Table):  # noqa: ANN202
    pk = [c.name for c in table.primary_key.columns] or [c.name for c in table.columns]
    # In Python, not SQL: PostgreSQL's collation may order text ids differently from SQLite.
    return lambda row: tuple((row[name] is None, row[name]) for name in pk)


def export_database(engine: Engine, directory: str | Path) -> dict[str, int]:
    """Write every table to ``directory/<table>.jsonl`` plus ``manifest.json``; returns rows per table."""
    directory = Path(directory)
    revision = current_revision(engine)
    if revision is None:
        raise StoreError(
            f"the database {describe_url(str(engine.url))} has no R2tA schema: nothing to export "
            "(create one with `r2ta db init`)"
        )
    if directory.exists() and any(directory.iterdir()) and not (directory / MANIFEST).exists():
        raise StoreError(
            f"{directory} is not empty and holds no earlier export ({MANIFEST}): "
            "choose an empty or new folder, so that nothing of yours is overwritten"
        )
    directory.mkdir(parents=True, exist_ok=True)
    tables = _tables(engine)
    manifest_tables: dict[str, dict] = {}
    with engine.connect() as connection:
        for table in tables:
            rows = [dict(r) for r in connection.execute(select(table)).mappings()]
            rows.sort(key=_sort_key(table))
            data = "".join(_line(row) + "\n" for row in rows).encode("utf-8")
            tmp = directory / f".{table.name}.jsonl.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, directory / f"{table.name}.jsonl")
            manifest_tables[table.name] = {
                "file": f"{table.name}.jsonl",
                "rows": len(rows),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    manifest = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "revision": revision,
        "tables": manifest_tables,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return {name: info["rows"] for name, info in manifest_tables.items()}


def read_manifest(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ImportRefused(f"{directory} is not an R2tA export: it has no {MANIFEST} (make one with `r2ta db export`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImportRefused(f"{path} is not valid JSON ({err}): the export is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ImportRefused(f"{path} is not an R2tA export manifest")
    if manifest.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ImportRefused(
            f"{path} has export format {manifest.get('format_version')!r}; this R2tA reads {EXPORT_FORMAT_VERSION}"
        )
    if not is_known_revision(str(manifest.get("revision"))):
        raise ImportRefused(
            f"{path} was made at schema revision {manifest.get('revision')!r}, which this R2tA does not know: "
            "import it with the R2tA version that exported it, or a newer one"
        )
    return manifest


def _read_rows(directory: Path, table: Table, info: dict) -> list[dict]:
    path = directory / str(info.get("file", ""))
    if not path.is_file():
        raise ImportRefused(f"the export lacks {path.name} for table {table.name}: the export is incomplete")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise ImportRefused(f"{path} does not match its checksum in {MANIFEST}: the file was changed or truncated")
    columns = {c.name: c for c in table.columns}
    required = {c.name for c in table.columns if not c.nullable and not c.primary_key}
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ImportRefused(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ImportRefused(f"{path}:{number}: a row must be a JSON object")
        unknown = sorted(set(row) - set(columns))
        missing = sorted(required - set(row))
        if unknown or missing:
            raise ImportRefused(
                f"{path}:{number}: columns do not match table {table.name} "
                f"(unknown: {unknown or 'none'}, missing: {missing or 'none'})"
            )
        for name, value in row.items():
            if value is not None and isinstance(columns[name].type, DateTime):
                try:
                    row[name] = datetime.fromisoformat(value)
                except (TypeError, ValueError):
                    raise ImportRefused(f"{path}:{number}: {name} is not a timestamp: {value!r}") from None
        rows.append(row)
    if len(rows) != info.get("rows"):
        raise ImportRefused(f"{path} has {len(rows)} rows, its manifest says {info.get('rows')}")
    return rows


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table, in foreign-key order."""
    with engine.connect() as connection:
        return {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one() for t in _tables(engine)}


def import_database(engine: Engine, directory: str | Path) -> dict[str, int]:
    """Load an export into an empty database, then upgrade it to the newest schema; returns rows per table."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    revision = str(manifest["revision"])
    current = current_revision(engine)
    if current is not None:
        filled = {name: n for name, n in table_counts(engine).items() if n}
        if filled:
            listed = ", ".join(f"{name} {n}" for name, n in sorted(filled.items()))
            raise ImportRefused(
                f"refusing to import into {describe_url(str(engine.url))}: it is not empty (rows: {listed}). "
                "Import only into an empty database (a new SQLite file or PostgreSQL database, via R2TA_DATABASE_URL); "
                "nothing was changed"
            )
        if current != revision:
            downgrade_db(engine, "base")  # empty: nothing to lose; rebuilt at the export's revision below
    init_db(engine, revision)
    tables = _tables(engine)
    listed = manifest.get("tables") or {}
    unknown = sorted(set(listed) - {t.name for t in tables})
    if unknown:
        raise ImportRefused(f"the export has tables that revision {revision} does not: {unknown}")
    loaded = {t.name: _read_rows(directory, t, listed[t.name]) for t in tables if t.name in listed}
    with engine.begin() as connection:
        for table in tables:
            rows = loaded.get(table.name, [])
            for start in range(0, len(rows), _BATCH):
                connection.execute(table.insert(), rows[start : start + _BATCH])
        if engine.dialect.name == "postgresql":
            _reset_sequences(connection, tables)
    init_db(engine)
    return {name: len(rows) for name, rows in loaded.items()}


def _reset_sequences(connection, tables: list[Table]) -> None:  # noqa: ANN001
    # Rows came with their ids; the next id a sequence hands out must come after them.
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer):
            continue
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'COALESCE((SELECT MAX("{pk[0].name}") FROM "{table.name}"), 0) + 1, false)'
            ),
            {"table": table.name, "column": pk[0].name},
        )
