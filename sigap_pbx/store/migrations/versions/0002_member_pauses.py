"""Create member_pauses: pause intervals of queue members, per queue and reason.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-11 09:00:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied here, not imported from store/members.py, so that this revision creates
# the same schema after the enum there changes.
PAUSE_SOURCES = ("pause_event", "member_event", "queue_status")


def check_in(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def upgrade() -> None:
    op.create_table(
        "member_pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(), nullable=False),
        sa.Column("member_name", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_pauses")),
        sa.CheckConstraint(
            check_in("source", PAUSE_SOURCES), name=op.f("ck_member_pauses_source")
        ),
        sa.CheckConstraint(
            "seconds IS NULL OR seconds >= 0", name=op.f("ck_member_pauses_seconds")
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL AND seconds IS NULL) "
            "OR (ended_at IS NOT NULL AND seconds IS NOT NULL)",
            name=op.f("ck_member_pauses_closed"),
        ),
    )
    op.create_index(
        op.f("ix_member_pauses_interface_started_at"),
        "member_pauses",
        ["interface", "started_at"],
    )
    op.create_index(
        op.f("ix_member_pauses_started_at"), "member_pauses", ["started_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_member_pauses_started_at"), table_name="member_pauses")
    op.drop_index(
        op.f("ix_member_pauses_interface_started_at"), table_name="member_pauses"
    )
    op.drop_table("member_pauses")
