"""The errors the data layer raises on purpose; each says what happened and what to do."""

from __future__ import annotations

from r2ta.errors import R2taError


class StoreError(R2taError):
    """The database refused or cannot serve a request (bad argument, wrong state, unreachable server)."""


class RecordNotFound(StoreError):
    """A row that a call names (by id) does not exist."""


class ReviewConflict(StoreError):
    """Someone saved the same item after you loaded it: your save was refused, theirs is kept."""


class ImportRefused(StoreError):
    """``r2ta db import`` was pointed at a non-empty database or at something that is not an export."""
