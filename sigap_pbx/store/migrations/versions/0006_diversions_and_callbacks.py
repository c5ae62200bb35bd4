"""Create the diversion flags of caller numbers and the callback attempts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "number_diversions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_by", sa.String(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "action IN ('warning', 'low_priority')",
            name=op.f("ck_number_diversions_action"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_diversions")),
    )
    with op.batch_alter_table("number_diversions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_number_diversions_number_until"),
            ["number", "until"],
            unique=False,
        )

    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("caller_number", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("uniqueid", sa.String(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('calling', 'operator_no_answer', 'answered', 'no_answer', "
            "'busy', 'failed', 'cancelled')",
            name=op.f("ck_callback_attempts_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_callback_attempts_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callback_attempts_call_id"), ["call_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_callback_attempts_uniqueid"), ["uniqueid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_attempts_uniqueid"))
        batch_op.drop_index(batch_op.f("ix_callback_attempts_call_id"))

    op.drop_table("callback_attempts")
    with op.batch_alter_table("number_diversions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_number_diversions_number_until"))

    op.drop_table("number_diversions")
