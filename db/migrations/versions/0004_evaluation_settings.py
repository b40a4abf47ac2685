"""What an evaluation asked the model for: ``evaluation.settings``.

Two evaluations of one model under different answer budgets score differently
(run450e: 0.018 micro F1 under 320 tokens + 20 a construct, 0.026 under a flat
384), and the store could not tell which was which: only their number and date.
The column holds the generation settings the evaluation ran under — the tokens an
answer, the tokens more a construct, the tokens a verdict asked for may take —
and how many of the answers it scored were made under another budget (variants
beyond ``--limit`` keep the answers an earlier evaluation gave them). NULL: not
recorded (every evaluation stored before this revision, and the checker's).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Plain ALTER TABLE (see 0003): batch mode would copy and drop ``evaluation``, which the foreign key of
# ``evaluation_result`` refuses.


def upgrade() -> None:
    op.add_column("evaluation", sa.Column("settings", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("evaluation", "settings")
