"""Initial schema: every record of DESIGN.md §4.

Variants keep their ground-truth mistakes as a JSON list only; revision 0002
adds the indexed category rows that the review queue filters on.

Written out by hand (not ``metadata.create_all``) so that this revision stays
what it was when later revisions change the models.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _stamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "base_schema",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("requirements", sa.Text(), nullable=False),
        _json("diagram"),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_base_schema"),
    )
    op.create_table(
        "variant",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("base_id", sa.String(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(), nullable=False),
        sa.Column("requirements", sa.Text(), nullable=False),
        _json("diagram"),
        _json("mistakes"),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_variant"),
        sa.ForeignKeyConstraint(["base_id"], ["base_schema.id"], name="fk_variant_base_id_base_schema"),
        sa.CheckConstraint("split IN ('train', 'test')", name="ck_variant_split"),
    )
    op.create_index("ix_variant_base_id", "variant", ["base_id"])
    op.create_index("ix_variant_split", "variant", ["split"])

    op.create_table(
        "trace",
        _id(),
        sa.Column("variant_id", sa.String(), nullable=False),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        _json("prompt"),
        sa.Column("raw_output", sa.Text(), nullable=False),
        _json("steps", nullable=True),
        _json("verdict", nullable=True),
        _json("parse_errors"),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_trace"),
        sa.ForeignKeyConstraint(["variant_id"], ["variant.id"], name="fk_trace_variant_id_variant"),
    )
    op.create_index("ix_trace_variant_id_model_id", "trace", ["variant_id", "model_id"])
    op.create_index("ix_trace_model_id", "trace", ["model_id"])
    op.create_index("ix_trace_created_at", "trace", ["created_at"])

    op.create_table(
        "proposal",
        _id(),
        sa.Column("trace_id", sa.Integer(), nullable=False),
        sa.Column("auditor_id", sa.String(), nullable=False),
        _json("step_verdicts"),
        _json("inserted_steps"),
        _json("steps"),
        _json("verdict", nullable=True),
        _json("changes"),
        _json("flags"),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_proposal"),
        sa.ForeignKeyConstraint(["trace_id"], ["trace.id"], name="fk_proposal_trace_id_trace"),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'edited', 'rejected')", name="ck_proposal_status"),
        sa.CheckConstraint("version >= 1", name="ck_proposal_version"),
    )
    op.create_index("ix_proposal_trace_id", "proposal", ["trace_id"])
    op.create_index("ix_proposal_status_id", "proposal", ["status", "id"])

    op.create_table(
        "review",
        _id(),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("proposal_version", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        _json("steps", nullable=True),
        _json("verdict", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_review"),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"], name="fk_review_proposal_id_proposal"),
        sa.UniqueConstraint("proposal_id", "proposal_version", name="uq_review_proposal_id_proposal_version"),
        sa.CheckConstraint("decision IN ('accept', 'edit', 'reject')", name="ck_review_decision"),
    )
    op.create_index("ix_review_proposal_id", "review", ["proposal_id"])
    op.create_index("ix_review_reviewer", "review", ["reviewer"])
    op.create_index("ix_review_created_at", "review", ["created_at"])

    op.create_table(
        "preference_pair",
        _id(),
        sa.Column("review_id", sa.Integer(), nullable=False),
        _json("prompt"),
        _json("chosen"),
        _json("rejected"),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_preference_pair"),
        sa.ForeignKeyConstraint(["review_id"], ["review.id"], name="fk_preference_pair_review_id_review"),
        sa.UniqueConstraint("review_id", name="uq_preference_pair_review_id"),
    )

    op.create_table(
        "training_run",
        _id(),
        sa.Column("run_dir", sa.String(), nullable=True),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _json("config"),
        sa.Column("base_model", sa.String(), nullable=False),
        sa.Column("parent_run_id", sa.Integer(), nullable=True),
        sa.Column("output_model_id", sa.String(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        _json("artefacts"),
        _json("hardware"),
        sa.Column("log_path", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        _stamp("created_at"),
        _stamp("started_at", nullable=True),
        _stamp("ended_at", nullable=True),
        _stamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_training_run"),
        sa.ForeignKeyConstraint(
            ["parent_run_id"], ["training_run.id"], name="fk_training_run_parent_run_id_training_run"
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="ck_training_run_status",
        ),
        sa.UniqueConstraint("run_dir", name="uq_training_run_run_dir"),
    )
    op.create_index("ix_training_run_status", "training_run", ["status"])
    op.create_index("ix_training_run_output_model_id", "training_run", ["output_model_id"])

    op.create_table(
        "run_metric",
        _id(),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        _json("metrics"),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_run_metric"),
        sa.ForeignKeyConstraint(["run_id"], ["training_run.id"], name="fk_run_metric_run_id_training_run"),
    )
    op.create_index("ix_run_metric_run_id_step", "run_metric", ["run_id", "step"])

    op.create_table(
        "run_example",
        _id(),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_example"),
        sa.ForeignKeyConstraint(["run_id"], ["training_run.id"], name="fk_run_example_run_id_training_run"),
        sa.ForeignKeyConstraint(["review_id"], ["review.id"], name="fk_run_example_review_id_review"),
        sa.ForeignKeyConstraint(["pair_id"], ["preference_pair.id"], name="fk_run_example_pair_id_preference_pair"),
        sa.UniqueConstraint("run_id", "kind", "review_id", name="uq_run_example_run_id_kind_review_id"),
        sa.CheckConstraint("kind IN ('sft', 'dpo')", name="ck_run_example_kind"),
    )
    op.create_index("ix_run_example_review_id", "run_example", ["review_id"])

    op.create_table(
        "evaluation",
        _id(),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("split", sa.String(), nullable=False),
        sa.Column("n_variants", sa.Integer(), nullable=False),
        _json("metrics"),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluation"),
        sa.ForeignKeyConstraint(["run_id"], ["training_run.id"], name="fk_evaluation_run_id_training_run"),
    )
    op.create_index("ix_evaluation_model_id", "evaluation", ["model_id"])
    op.create_index("ix_evaluation_created_at", "evaluation", ["created_at"])

    op.create_table(
        "evaluation_result",
        _id(),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.String(), nullable=False),
        sa.Column("trace_id", sa.Integer(), nullable=True),
        _json("predicted"),
        _json("metrics"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluation_result"),
        sa.ForeignKeyConstraint(
            ["evaluation_id"], ["evaluation.id"], name="fk_evaluation_result_evaluation_id_evaluation"
        ),
        sa.ForeignKeyConstraint(["variant_id"], ["variant.id"], name="fk_evaluation_result_variant_id_variant"),
        sa.ForeignKeyConstraint(["trace_id"], ["trace.id"], name="fk_evaluation_result_trace_id_trace"),
        sa.UniqueConstraint("evaluation_id", "variant_id", name="uq_evaluation_result_evaluation_id_variant_id"),
    )
    op.create_index("ix_evaluation_result_variant_id", "evaluation_result", ["variant_id"])


def downgrade() -> None:
    for table in (
        "evaluation_result",
        "evaluation",
        "run_example",
        "run_metric",
        "training_run",
        "preference_pair",
        "review",
        "proposal",
        "trace",
        "variant",
        "base_schema",
    ):
        op.drop_table(table)
