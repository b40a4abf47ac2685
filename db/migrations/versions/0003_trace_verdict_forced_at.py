"""Where a trace's verdict was asked for: ``trace.verdict_forced_at``.

A model that spends its token budget on steps never writes the verdict; R2tA then
appends ``VERDICT:`` to its complete lines and lets it write the verdict
(:func:`r2ta.prompting.verdict_prefix`). The column holds how many characters of
``raw_output`` the model wrote before that line was appended; NULL means the
model wrote the whole answer itself (every trace stored before this revision).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: SQLite adds and (3.35+) drops a column in place, while
# batch mode would copy and drop ``trace``, which the foreign keys of ``proposal`` refuse.


def upgrade() -> None:
    op.add_column("trace", sa.Column("verdict_forced_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("trace", "verdict_forced_at")
