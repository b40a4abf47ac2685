"""Alembic revisions of R2tA's schema, run by :func:`db.engine.init_db` (a package so that installs ship them)."""
