"""Alembic environment for R2tA's schema. Run programmatically by :func:`db.engine.init_db`.

The caller hands over an open connection (``config.attributes["connection"]``)
and owns the transaction; there is no alembic.ini. To write a new revision, copy
the newest file in ``versions/`` and check it with ``tests/db/test_migrations.py``
(it compares the upgraded schema with :mod:`db.models`).
"""

from __future__ import annotations

from alembic import context

from db.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("db/migrations runs only through db.engine.init_db(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
