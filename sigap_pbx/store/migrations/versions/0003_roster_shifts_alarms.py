"""Create the roster, audit, shift statistics and alarm tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 21:20:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied here, not imported from the store modules, so that this revision creates
# the same schema after the enums there change.
DUTY_ACTIONS = ("login", "logout")
MEMBER_EVENT_KINDS = ("offered", "answered", "missed", "completed")


def check_in(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "roster_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        timestamp("saved_at"),
        sa.Column("saved_by", sa.String(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("coverage_problems", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_versions")),
    )
    op.create_table(
        "duty_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shift_date", sa.Date(), nullable=False),
        sa.Column("shift_name", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        timestamp("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_overrides")),
        sa.CheckConstraint(
            check_in("action", DUTY_ACTIONS), name=op.f("ck_duty_overrides_action")
        ),
    )
    op.create_index(
        op.f("ix_duty_overrides_shift_date_shift_name"),
        "duty_overrides",
        ["shift_date", "shift_name"],
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        timestamp("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_subject_at"), "audit_log", ["subject", "at"])
    op.create_table(
        "member_events",
        sa.Column("id", sa.Integer(), nullable=False),
        timestamp("at"),
        sa.Column("interface", sa.String(), nullable=False),
        sa.Column("member_name", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("uniqueid", sa.String(), nullable=True),
        sa.Column("linkedid", sa.String(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_events")),
        sa.CheckConstraint(
            check_in("kind", MEMBER_EVENT_KINDS), name=op.f("ck_member_events_kind")
        ),
        sa.CheckConstraint(
            "seconds IS NULL OR seconds >= 0", name=op.f("ck_member_events_seconds")
        ),
    )
    op.create_index(
        op.f("ix_member_events_interface_at"), "member_events", ["interface", "at"]
    )
    op.create_index(op.f("ix_member_events_at"), "member_events", ["at"])
    op.create_table(
        "shift_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shift_date", sa.Date(), nullable=False),
        sa.Column("shift_name", sa.String(), nullable=False),
        timestamp("started_at"),
        timestamp("ended_at"),
        timestamp("created_at"),
        sa.Column("crew", sa.String(), nullable=True),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_reports")),
        sa.UniqueConstraint(
            "shift_date", "shift_name", name=op.f("uq_shift_reports_shift_date_shift_name")
        ),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        timestamp("raised_at"),
        timestamp("cleared_at", nullable=True),
        timestamp("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    op.create_index(op.f("ix_alarms_raised_at"), "alarms", ["raised_at"])
    op.create_index(op.f("ix_alarms_kind_subject"), "alarms", ["kind", "subject"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alarms_kind_subject"), table_name="alarms")
    op.drop_index(op.f("ix_alarms_raised_at"), table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("shift_reports")
    op.drop_index(op.f("ix_member_events_at"), table_name="member_events")
    op.drop_index(op.f("ix_member_events_interface_at"), table_name="member_events")
    op.drop_table("member_events")
    op.drop_index(op.f("ix_audit_log_subject_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(
        op.f("ix_duty_overrides_shift_date_shift_name"), table_name="duty_overrides"
    )
    op.drop_table("duty_overrides")
    op.drop_table("roster_versions")
