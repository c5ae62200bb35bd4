"""Create the call record tables: calls, call_legs, call_events, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-12-04 19:00:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The allowed values are copied here, not imported from models.py, so that this
# revision creates the same schema after the enums in models.py change.
CALL_OUTCOMES = (
    "in_progress",
    "answered",
    "abandoned_before_queue",
    "abandoned_in_queue",
    "overflowed",
    "failed",
)
OVERFLOW_STAGES = ("backup", "supervisor", "oncall")
LEG_OUTCOMES = ("ringing", "answered", "no_answer", "rejected", "cancelled")
EVENT_SOURCES = ("ami", "cel", "cdr", "controller")


def check_in(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def row_timestamp(name: str) -> sa.Column:
    """Return a created_at or updated_at column, filled by the server if omitted."""
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uniqueid", sa.String(), nullable=False),
        sa.Column("linkedid", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("caller_number", sa.String(), nullable=True),
        sa.Column("caller_number_raw", sa.String(), nullable=True),
        sa.Column("caller_name", sa.Text(), nullable=True),
        sa.Column("trunk", sa.String(), nullable=True),
        sa.Column("dialled_number", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=True),
        timestamp("arrived_at"),
        timestamp("queued_at"),
        timestamp("answered_at"),
        timestamp("ended_at"),
        sa.Column("operator", sa.String(), nullable=True),
        sa.Column("operator_interface", sa.String(), nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column(
            "outcome", sa.String(), nullable=False, server_default="in_progress"
        ),
        sa.Column("overflow_stage", sa.String(), nullable=True),
        sa.Column("answered_by", sa.String(), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("hangup_cause_text", sa.Text(), nullable=True),
        sa.Column(
            "reconciled", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        row_timestamp("created_at"),
        row_timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("uniqueid", name=op.f("uq_calls_uniqueid")),
        sa.CheckConstraint(
            check_in("outcome", CALL_OUTCOMES), name=op.f("ck_calls_outcome")
        ),
        sa.CheckConstraint(
            "overflow_stage IS NULL OR " + check_in("overflow_stage", OVERFLOW_STAGES),
            name=op.f("ck_calls_overflow_stage"),
        ),
    )
    op.create_index(op.f("ix_calls_linkedid"), "calls", ["linkedid"])
    op.create_index(op.f("ix_calls_arrived_at"), "calls", ["arrived_at"])
    op.create_index(op.f("ix_calls_caller_number"), "calls", ["caller_number"])

    op.create_table(
        "call_legs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("uniqueid", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("interface", sa.String(), nullable=True),
        sa.Column("member_name", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=True),
        timestamp("called_at"),
        timestamp("connected_at"),
        timestamp("ended_at"),
        sa.Column("ring_seconds", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False, server_default="ringing"),
        row_timestamp("created_at"),
        row_timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_legs")),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_call_legs_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("uniqueid", name=op.f("uq_call_legs_uniqueid")),
        sa.CheckConstraint(
            check_in("outcome", LEG_OUTCOMES), name=op.f("ck_call_legs_outcome")
        ),
    )
    op.create_index(op.f("ix_call_legs_call_id"), "call_legs", ["call_id"])

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_call_events_call_id_calls"),
            ondelete="CASCADE",
        ),
        # Leading call_id also serves the per-call timeline lookup.
        sa.UniqueConstraint(
            "call_id", "dedupe_key", name=op.f("uq_call_events_call_id_dedupe_key")
        ),
        sa.CheckConstraint(
            check_in("source", EVENT_SOURCES), name=op.f("ck_call_events_source")
        ),
    )

    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        row_timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("call_events")
    op.drop_index(op.f("ix_call_legs_call_id"), table_name="call_legs")
    op.drop_table("call_legs")
    op.drop_index(op.f("ix_calls_caller_number"), table_name="calls")
    op.drop_index(op.f("ix_calls_arrived_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_linkedid"), table_name="calls")
    op.drop_table("calls")
