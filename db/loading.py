"""Load a built dataset (base schemas and variants) into the store; safe to run again.

``r2ta dataset build`` calls :func:`load_dataset` with
``BaseSchema.model_dump(mode="json")`` and ``Variant.model_dump(mode="json")``
dicts. Rows are matched by id: a new id is inserted, a changed row is updated
in place (its category rows rewritten), an identical one is left alone, so a
second run adds nothing. Rows the new build no longer has are *kept* and only
counted: traces and reviews may point at them, and losing a reviewer's work is
worse than a stale variant.

This module must not import anything from :mod:`r2ta` beyond ``errors``/``config``
(it takes plain dicts, not the pydantic records).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.models import SPLITS, BaseSchemaRow, VariantMistakeRow, VariantRow, utcnow
from r2ta.errors import DatasetError

_BASE_FIELDS = ("domain", "title", "requirements", "diagram")
_VARIANT_FIELDS = ("base_id", "seed", "split", "requirements", "diagram", "mistakes")


@dataclass(frozen=True)
class LoadSummary:
    """What a load did, per kind: inserted, updated, unchanged, and kept although absent from the build."""

    base_inserted: int = 0
    base_updated: int = 0
    base_unchanged: int = 0
    variants_inserted: int = 0
    variants_updated: int = 0
    variants_unchanged: int = 0
    variants_not_in_build: int = 0

    def __str__(self) -> str:
        return (
            f"base schemas: {self.base_inserted} new, {self.base_updated} updated, {self.base_unchanged} unchanged; "
            f"variants: {self.variants_inserted} new, {self.variants_updated} updated, "
            f"{self.variants_unchanged} unchanged, {self.variants_not_in_build} kept from earlier builds"
        )


def _field(record: dict, name: str, what: str) -> Any:
    if name not in record:
        raise DatasetError(f"{what} has no {name!r}: expected the fields of r2ta.records ({what})")
    return record[name]


def _checked_base(record: dict) -> dict:
    what = f"base schema {record.get('id', '?')!r}"
    out = {name: _field(record, name, what) for name in ("id", *_BASE_FIELDS)}
    if not isinstance(out["diagram"], dict):
        raise DatasetError(f"{what}: 'diagram' must be a JSON object, got {type(out['diagram']).__name__}")
    return out


def _checked_variant(record: dict) -> dict:
    what = f"variant {record.get('id', '?')!r}"
    out = {name: _field(record, name, what) for name in ("id", *_VARIANT_FIELDS)}
    if out["split"] not in SPLITS:
        raise DatasetError(f"{what}: split {out['split']!r} is not one of {', '.join(SPLITS)}")
    if not isinstance(out["mistakes"], list) or not all(
        isinstance(m, dict) and isinstance(m.get("category"), str) for m in out["mistakes"]
    ):
        raise DatasetError(f"{what}: 'mistakes' must be a list of objects with a 'category'")
    return out


def load_dataset(base_schemas: list[dict], variants: list[dict], *, session: Session) -> LoadSummary:
    """Insert or update base schemas and variants (with their category index) in one transaction."""
    bases = [_checked_base(b) for b in base_schemas]
    rows = [_checked_variant(v) for v in variants]
    for kind, ids in (("base schema", [b["id"] for b in bases]), ("variant", [v["id"] for v in rows])):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dupes:
            raise DatasetError(f"the build lists {kind} ids more than once: {dupes[:10]}")

    try:
        summary = _upsert(bases, rows, session=session)
        session.commit()
    except IntegrityError as err:  # another load inserted the same ids between our read and our write
        session.rollback()
        raise DatasetError(
            f"the dataset changed in the database while loading ({err.orig}): run the load again"
        ) from None
    return summary


def _upsert(bases: list[dict], rows: list[dict], *, session: Session) -> LoadSummary:
    stored_bases = {b.id: b for b in session.exec(select(BaseSchemaRow))}
    known_base_ids = set(stored_bases) | {b["id"] for b in bases}
    orphans = sorted({v["base_id"] for v in rows} - known_base_ids)
    if orphans:
        raise DatasetError(
            f"variants name base schemas that are neither in this build nor in the database: {orphans[:10]}"
        )

    now = utcnow()
    counts = dict.fromkeys(("bi", "bu", "bn", "vi", "vu", "vn"), 0)
    for record in bases:
        row = stored_bases.get(record["id"])
        if row is None:
            session.add(BaseSchemaRow(**record, created_at=now, updated_at=now))
            counts["bi"] += 1
        elif any(getattr(row, f) != record[f] for f in _BASE_FIELDS):
            for f in _BASE_FIELDS:
                setattr(row, f, record[f])
            row.updated_at = now
            session.add(row)
            counts["bu"] += 1
        else:
            counts["bn"] += 1
    session.flush()  # base rows first: variants reference them

    stored = {v.id: v for v in session.exec(select(VariantRow))}
    changed_ids: list[str] = []
    for record in rows:
        row = stored.get(record["id"])
        if row is None:
            session.add(VariantRow(**record, created_at=now, updated_at=now))
            changed_ids.append(record["id"])
            counts["vi"] += 1
        elif any(getattr(row, f) != record[f] for f in _VARIANT_FIELDS):
            for f in _VARIANT_FIELDS:
                setattr(row, f, record[f])
            row.updated_at = now
            session.add(row)
            changed_ids.append(record["id"])
            counts["vu"] += 1
        else:
            counts["vn"] += 1
    session.flush()

    by_id = {v["id"]: v for v in rows}
    for start in range(0, len(changed_ids), 500):
        chunk = changed_ids[start : start + 500]
        session.exec(delete(VariantMistakeRow).where(col(VariantMistakeRow.variant_id).in_(chunk)))
    session.add_all(
        VariantMistakeRow(variant_id=variant_id, position=position, category=mistake["category"])
        for variant_id in changed_ids
        for position, mistake in enumerate(by_id[variant_id]["mistakes"])
    )
    session.flush()
    return LoadSummary(
        base_inserted=counts["bi"],
        base_updated=counts["bu"],
        base_unchanged=counts["bn"],
        variants_inserted=counts["vi"],
        variants_updated=counts["vu"],
        variants_not_in_build=len(set(stored) - set(by_id)),
        variants_unchanged=counts["vn"],
    )
