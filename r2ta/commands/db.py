"""``r2ta db``: create, upgrade, inspect, back up and restore the store.

The database is ``R2TA_DATABASE_URL`` or the SQLite file in the data folder.
Every subcommand is safe to run twice; ``import`` only ever fills an empty
database. The data layer is imported inside the handlers so that other ``r2ta``
commands do not pay for SQLAlchemy and Alembic at start-up.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "db",
        help="create, upgrade, inspect, export or import the database",
        description="The database is R2TA_DATABASE_URL, or data/r2ta.db (SQLite) without it.",
    )
    sub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    sub.add_parser("init", help="create the database and its tables (no-op if they exist)").set_defaults(func=_init)
    sub.add_parser("upgrade", help="upgrade the schema in place to this version's newest").set_defaults(func=_upgrade)
    sub.add_parser("status", help="schema revision, rows per table, items per stage").set_defaults(func=_status)
    export = sub.add_parser("export", help="write every table as DIR/<table>.jsonl (plus manifest.json)")
    export.add_argument("dir", metavar="DIR")
    export.set_defaults(func=_export)
    imp = sub.add_parser("import", help="load an export (from `r2ta db export`) into an empty database")
    imp.add_argument("dir", metavar="DIR")
    imp.set_defaults(func=_import)


def _init(args: argparse.Namespace) -> int:
    from db.engine import current_revision, describe_url, get_engine, init_db

    engine = get_engine()
    before = current_revision(engine)
    after = init_db(engine)
    where = describe_url(str(engine.url))
    if before is None:
        print(f"created the database {where} (schema {after})")
    elif before == after:
        print(f"the database {where} is ready (schema {after}); nothing to do")
    else:
        print(f"upgraded the database {where} from schema {before} to {after}")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from db.engine import current_revision, describe_url, get_engine, init_db
    from db.errors import StoreError

    engine = get_engine()
    before = current_revision(engine)
    if before is None:
        raise StoreError(
            f"{describe_url(str(engine.url))} has no R2tA schema to upgrade: create it with `r2ta db init`"
        )
    after = init_db(engine)
    if before == after:
        print(f"schema {after} is the newest; nothing to upgrade")
    else:
        print(f"upgraded {describe_url(str(engine.url))} from schema {before} to {after}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from db.engine import current_revision, describe_url, get_engine, head_revision
    from db.portability import table_counts
    from db.queries import count_by_stage

    engine = get_engine()
    revision = current_revision(engine)
    head = head_revision()
    print(f"database: {describe_url(str(engine.url))}")
    if revision is None:
        print("schema:   none (run `r2ta db init`)")
        return 0
    print(f"schema:   {revision} ({'newest' if revision == head else f'older than {head}: run `r2ta db upgrade`'})")
    counts = table_counts(engine)
    stages: dict[str, int] = {}
    if revision == head:
        with Session(engine) as session:
            stages = count_by_stage(session=session)
    width = max(len(name) for name in [*counts, *stages])
    print("rows per table:")
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>8}")
    if stages:
        print("items per stage:")
        for name, n in stages.items():
            print(f"  {name:<{width}}  {n:>8}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from db.engine import get_engine
    from db.portability import export_database

    counts = export_database(get_engine(), args.dir)
    print(f"exported {sum(counts.values())} rows of {len(counts)} tables to {args.dir}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from db.engine import current_revision, describe_url, get_engine
    from db.portability import import_database

    engine = get_engine()
    counts = import_database(engine, args.dir)
    print(
        f"imported {sum(counts.values())} rows of {len(counts)} tables into {describe_url(str(engine.url))} "
        f"(schema {current_revision(engine)})"
    )
    return 0
