"""The tables of R2tA's store: one SQLModel class per record of DESIGN.md §4.

Structured payloads (diagrams, ground-truth mistakes, parsed steps and verdicts,
per-step audit verdicts, metrics) are JSON columns: the database never looks
inside them. What the queries filter, join or sort on is a real, indexed column
(split, base id, mistake category, model id, status, reviewer, timestamps).

Provenance, every arrow a foreign key::

    training_run ─ run_example ─┬─ preference_pair ─ review ─ proposal ─ trace ─ variant ─ base_schema
                                └─ review
    evaluation ─ evaluation_result ─ variant (and the trace it scored)

so a trained model leads back to the reviews, traces and variants it learned
from. Nothing cascades on delete except a variant's category index rows: a
review can never vanish because something it points at was removed.

The classes carry a ``Row`` suffix so that they never clash with the domain
models in :mod:`r2ta` (``r2ta.records.Variant`` is the record, ``VariantRow``
its stored form). Timestamps are naive UTC.

This module holds the tables only: no queries, no engine. The schema is owned
by the Alembic revisions in ``db/migrations/versions``; a change here needs a
new revision (``tests/db/test_migrations.py`` fails when they disagree).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Named constraints, so that a later migration can alter them (SQLite batch mode
# needs names) and PostgreSQL and SQLite agree on what they are called.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SPLITS = ("train", "test")
DECISIONS = ("accept", "edit", "reject")
# A proposal's status is the decision in force: the latest review's, or pending.
PROPOSAL_STATUSES = ("pending", "accepted", "edited", "rejected")
STATUS_BY_DECISION = {"accept": "accepted", "edit": "edited", "reject": "rejected"}
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_FINAL_STATUSES = ("succeeded", "failed", "cancelled")
EXAMPLE_KINDS = ("sft", "dpo")


def utcnow() -> datetime:
    """Now, as naive UTC (SQLite has no time zones; both backends store the same value)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json_or_null() -> Any:
    # none_as_null: Python None is SQL NULL (not the JSON text 'null'), so IS NULL works.
    return Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


def _json_required() -> Any:
    return Field(sa_column=Column(JSON, nullable=False))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _json_dict() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def _text(default: str = "") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=False))


def _created(index: bool = False) -> Any:
    # Naive UTC on purpose: a zone-aware column would read back differently from
    # SQLite and PostgreSQL, and exports must be identical whatever the backend.
    return Field(default_factory=utcnow, sa_type=DateTime(), nullable=False, index=index)


def _when() -> Any:
    return Field(default=None, sa_type=DateTime(), nullable=True)


class BaseSchemaRow(SQLModel, table=True):
    """A hand-written, correct EERD with its requirements (``r2ta.records.BaseSchema``)."""

    __tablename__ = "base_schema"

    id: str = Field(primary_key=True)
    domain: str
    title: str
    requirements: str = _text()
    diagram: dict = _json_dict()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class VariantRow(SQLModel, table=True):
    """A mutated diagram and its ground truth (``r2ta.records.Variant``); ``mistakes`` is the full list."""

    __tablename__ = "variant"
    __table_args__ = (CheckConstraint("split IN ('train', 'test')", name="split"),)

    id: str = Field(primary_key=True)
    base_id: str = Field(foreign_key="base_schema.id", index=True)
    seed: int
    split: str = Field(index=True)
    requirements: str = _text()
    diagram: dict = _json_dict()
    mistakes: list = _json_list()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class VariantMistakeRow(SQLModel, table=True):
    """One row per ground-truth mistake of a variant: the index behind "next item of category X".

    Written by the loader from ``VariantRow.mistakes`` (which stays the source
    of truth for the mistakes themselves); added in revision 0002.
    """

    __tablename__ = "variant_mistake"
    __table_args__ = (
        UniqueConstraint("variant_id", "position"),
        Index("ix_variant_mistake_category_variant_id", "category", "variant_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    variant_id: str = Field(foreign_key="variant.id", ondelete="CASCADE")
    position: int
    category: str


class TraceRow(SQLModel, table=True):
    """One model's reasoning on one variant: what it was asked, what it said, what parsed."""

    __tablename__ = "trace"
    __table_args__ = (Index("ix_trace_variant_id_model_id", "variant_id", "model_id"),)

    id: int | None = Field(default=None, primary_key=True)
    variant_id: str = Field(foreign_key="variant.id")
    model_id: str = Field(index=True)
    model_version: str = ""
    prompt: Any = Field(default="", sa_column=Column(JSON, nullable=False))  # text or chat messages
    raw_output: str = _text()
    steps: list | None = _json_or_null()  # None: the output did not parse into steps
    verdict: Any = _json_or_null()  # None: no verdict parsed
    parse_errors: list = _json_list()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    # How many characters of raw_output the model wrote before R2tA appended "VERDICT:" because it
    # wrote none in its budget (r2ta.prompting.verdict_prefix); None: the model wrote it all.
    verdict_forced_at: int | None = None
    created_at: datetime = _created(index=True)


class ProposalRow(SQLModel, table=True):
    """An auditor's refinement of a trace, and what reviewers decide about.

    ``version`` starts at 1 and grows by one with every saved change (a review or
    an edit); writers must name the version they saw (see :mod:`db.queries`).
    """

    __tablename__ = "proposal"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'accepted', 'edited', 'rejected')", name="status"),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_proposal_status_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trace_id: int = Field(foreign_key="trace.id", index=True)
    auditor_id: str
    step_verdicts: list = _json_list()  # per original step: correct/hallucinated/inconsistent/irrelevant
    inserted_steps: list = _json_list()  # steps added for omissions
    steps: list = _json_list()  # the proposed trace
    verdict: Any = _json_or_null()  # the proposed verdict
    changes: list = _json_list()
    flags: list = _json_list()
    status: str = "pending"
    version: int = 1
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ReviewRow(SQLModel, table=True):
    """One reviewer's decision on one version of a proposal. Never updated, never deleted.

    ``(proposal_id, proposal_version)`` is unique: two decisions can never both
    be taken against the same view of an item, whatever code writes them.
    """

    __tablename__ = "review"
    __table_args__ = (
        UniqueConstraint("proposal_id", "proposal_version"),
        Index("ix_review_proposal_id_reviewer", "proposal_id", "reviewer"),  # "not yet reviewed by me"
        CheckConstraint("decision IN ('accept', 'edit', 'reject')", name="decision"),
    )

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    proposal_version: int  # the version the reviewer was looking at
    reviewer: str = Field(index=True)
    decision: str
    steps: list | None = _json_or_null()  # edited steps (decision "edit")
    verdict: Any = _json_or_null()  # edited verdict (decision "edit")
    reason: str = _text()
    created_at: datetime = _created(index=True)


class PreferencePairRow(SQLModel, table=True):
    """A DPO example (TRL's prompt/chosen/rejected), made from one accepted or edited review."""

    __tablename__ = "preference_pair"

    id: int | None = Field(default=None, primary_key=True)
    review_id: int = Field(foreign_key="review.id", unique=True)
    prompt: Any = _json_required()
    chosen: Any = _json_required()
    rejected: Any = _json_required()
    created_at: datetime = _created()


class TrainingRunRow(SQLModel, table=True):
    """One training job (SFT, DPO, or SFT then DPO): its recipe, its life, and where its artefacts landed.

    ``stage`` is where the job is (the runner's words: setup, sft, dpo, merging,
    done...), ``status`` how it is doing. ``run_dir`` is the job's folder, whose
    files are the truth while it runs (see :mod:`r2ta.jobs`); the row mirrors them.
    """

    __tablename__ = "training_run"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_dir: str | None = Field(default=None, unique=True)
    stage: str = ""
    status: str = Field(default="queued", index=True)
    config: dict = _json_dict()
    base_model: str  # the model id or path training starts from
    parent_run_id: int | None = Field(default=None, foreign_key="training_run.id")
    output_model_id: str | None = Field(default=None, index=True)  # the id its traces/evaluations use
    progress: float = 0.0  # 0..1
    artefacts: dict = _json_dict()  # name -> path (e.g. "adapter": ".../adapter")
    hardware: dict = _json_dict()
    log_path: str | None = None
    error: str = _text()
    created_at: datetime = _created()
    started_at: datetime | None = _when()
    ended_at: datetime | None = _when()
    updated_at: datetime = _created()


class RunMetricRow(SQLModel, table=True):
    """One logged point of a run's metrics (loss, reward margins...): appended, never rewritten."""

    __tablename__ = "run_metric"
    __table_args__ = (Index("ix_run_metric_run_id_step", "run_id", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_run.id")
    stage: str = ""  # steps restart at each stage of an SFT-then-DPO run
    step: int
    metrics: dict = _json_dict()
    created_at: datetime = _created()


class RunExampleRow(SQLModel, table=True):
    """A training example a run used: the review it came from, and for DPO the pair."""

    __tablename__ = "run_example"
    __table_args__ = (
        UniqueConstraint("run_id", "kind", "review_id"),
        CheckConstraint("kind IN ('sft', 'dpo')", name="kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_run.id")
    kind: str
    review_id: int = Field(foreign_key="review.id", index=True)
    pair_id: int | None = Field(default=None, foreign_key="preference_pair.id")


class EvaluationRow(SQLModel, table=True):
    """A model scored on a split: the metrics of DESIGN.md §5 in ``metrics``."""

    __tablename__ = "evaluation"

    id: int | None = Field(default=None, primary_key=True)
    model_id: str = Field(index=True)
    run_id: int | None = Field(default=None, foreign_key="training_run.id")
    split: str
    n_variants: int = 0
    metrics: dict = _json_dict()
    # What the model was asked under (r2ta.evaluation.evaluate): max_new_tokens, tokens_per_construct,
    # verdict_tokens, and other_budget (answers scored that were made under another budget); None: not recorded.
    settings: dict | None = _json_or_null()
    created_at: datetime = _created(index=True)


class EvaluationResultRow(SQLModel, table=True):
    """One variant's outcome in an evaluation: what the model predicted and how it scored."""

    __tablename__ = "evaluation_result"
    __table_args__ = (UniqueConstraint("evaluation_id", "variant_id"),)

    id: int | None = Field(default=None, primary_key=True)
    evaluation_id: int = Field(foreign_key="evaluation.id")
    variant_id: str = Field(foreign_key="variant.id", index=True)
    trace_id: int | None = Field(default=None, foreign_key="trace.id")
    predicted: list = _json_list()
    metrics: dict = _json_dict()


metadata = SQLModel.metadata
