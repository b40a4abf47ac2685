"""Indexes for the review queue: mistake categories, and "not yet reviewed by me".

"Next item to review in category X" filtered on the JSON list in
``variant.mistakes``, which no database can index portably (SQLite would scan
and parse every variant). This revision adds ``variant_mistake``, one row per
ground-truth mistake, indexed on (category, variant_id), and fills it from the
JSON of every existing variant; ``variant.mistakes`` stays the full ground truth.

"Leave out what I reviewed" looked reviews up by reviewer alone and scanned all
of that reviewer's reviews for every proposal; the index on ``review.proposal_id``
becomes one on (proposal_id, reviewer), which serves both lookups.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mistakes = op.create_table(
        "variant_mistake",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("variant_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_variant_mistake"),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variant.id"],
            name="fk_variant_mistake_variant_id_variant",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("variant_id", "position", name="uq_variant_mistake_variant_id_position"),
    )
    op.create_index("ix_variant_mistake_category_variant_id", "variant_mistake", ["category", "variant_id"])

    variant = sa.table("variant", sa.column("id", sa.String()), sa.column("mistakes", sa.JSON()))
    stored = op.get_bind().execute(sa.select(variant.c.id, variant.c.mistakes).order_by(variant.c.id))
    rows = [
        {"variant_id": variant_id, "position": position, "category": str(mistake["category"])}
        for variant_id, listed in stored
        for position, mistake in enumerate(listed or [])
    ]
    if rows:
        op.bulk_insert(mistakes, rows)

    op.create_index("ix_review_proposal_id_reviewer", "review", ["proposal_id", "reviewer"])
    op.drop_index("ix_review_proposal_id", table_name="review")


def downgrade() -> None:
    op.create_index("ix_review_proposal_id", "review", ["proposal_id"])
    op.drop_index("ix_review_proposal_id_reviewer", table_name="review")
    op.drop_table("variant_mistake")
