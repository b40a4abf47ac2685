"""R2tA's store: every record of the loop in SQLite by default, PostgreSQL by URL.

* :mod:`db.models`: the tables (SQLModel), one per record of DESIGN.md §4;
* :mod:`db.engine`: ``get_engine()`` (``R2TA_DATABASE_URL`` or ``data/r2ta.db``) and ``init_db()``;
* :mod:`db.migrations`: the Alembic revisions that create and upgrade the schema;
* :mod:`db.queries`: the verb functions the pages, pipeline and training call (``session=`` keyword);
  its docstring states the rule for several reviewers at once;
* :mod:`db.loading`: ``load_dataset()`` for ``r2ta dataset build``;
* :mod:`db.portability`: JSONL export and import (``r2ta db export|import``);
* :mod:`db.errors`: ``StoreError`` and its subclasses (``ReviewConflict``...).

This package imports nothing from :mod:`r2ta` except ``r2ta.errors`` and
``r2ta.config`` (the core depends on the store, not the reverse) and never
imports streamlit.
"""
