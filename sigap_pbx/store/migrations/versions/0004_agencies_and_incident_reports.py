"""Create the agency directory and the incident report tables.

Agencies with their lines and portal accounts; incident reports with their calls,
their dispatches to agencies and the status events of those; the webhook outbox;
and every attempt to forward a call to an agency line.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:47:55+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("dial_code", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("sample", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('fire', 'police', 'health', 'disaster', 'public_order', 'other')",
            name=op.f("ck_agencies_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
        sa.UniqueConstraint("code", name=op.f("uq_agencies_code")),
        sa.UniqueConstraint("dial_code", name=op.f("uq_agencies_dial_code")),
    )
    op.create_table(
        "incident_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("call_type", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("location_text", sa.Text(), nullable=False),
        sa.Column("kelurahan", sa.String(), nullable=False),
        sa.Column("kecamatan", sa.String(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("people", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "call_type IN ('emergency', 'information', 'prank', 'ghost', 'misdial')",
            name=op.f("ck_incident_reports_call_type"),
        ),
        sa.CheckConstraint(
            "category IN ('fire', 'traffic_accident', 'natural_disaster', 'security', 'health', 'other')",
            name=op.f("ck_incident_reports_category"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_incident_reports_status")
        ),
        sa.CheckConstraint(
            "priority BETWEEN 1 AND 4", name=op.f("ck_incident_reports_priority")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_reports")),
    )
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_reports_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "agency_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_agency_accounts_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_agency_accounts_username")),
    )
    op.create_table(
        "agency_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("hours", sa.String(), nullable=False),
        sa.Column("backup", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('endpoint', 'number')", name=op.f("ck_agency_lines_kind")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_agency_lines_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_lines")),
        sa.UniqueConstraint(
            "agency_id", "priority", name=op.f("uq_agency_lines_agency_id_priority")
        ),
    )
    op.create_table(
        "forward_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("line_priority", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.CheckConstraint(
            "mode IN ('conference', 'transfer', 'consult', 'escalation')",
            name=op.f("ck_forward_attempts_mode"),
        ),
        sa.CheckConstraint(
            "result IN ('ringing', 'answered', 'no_answer', 'busy', 'failed', 'cancelled')",
            name=op.f("ck_forward_attempts_result"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_forward_attempts_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["incident_reports.id"],
            name=op.f("fk_forward_attempts_report_id_incident_reports"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forward_attempts")),
    )
    with op.batch_alter_table("forward_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_forward_attempts_call_uniqueid"),
            ["call_uniqueid"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_forward_attempts_report_id"), ["report_id"], unique=False
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_outbox_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_outbox_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["incident_reports.id"],
            name=op.f("fk_outbox_report_id_incident_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint(
            "report_id",
            "agency_id",
            "version",
            name=op.f("uq_outbox_report_id_agency_id_version"),
        ),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "report_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["incident_reports.id"],
            name=op.f("fk_report_calls_report_id_incident_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_calls")),
        sa.UniqueConstraint(
            "report_id",
            "call_uniqueid",
            name=op.f("uq_report_calls_report_id_call_uniqueid"),
        ),
    )
    with op.batch_alter_table("report_calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_calls_call_uniqueid"), ["call_uniqueid"], unique=False
        )

    op.create_table(
        "report_dispatches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_by", sa.String(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('sent', 'acknowledged', 'dispatched', 'en_route', 'on_scene', 'resolved', 'false_alarm')",
            name=op.f("ck_report_dispatches_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_report_dispatches_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["incident_reports.id"],
            name=op.f("fk_report_dispatches_report_id_incident_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_dispatches")),
        sa.UniqueConstraint(
            "report_id",
            "agency_id",
            name=op.f("uq_report_dispatches_report_id_agency_id"),
        ),
    )
    with op.batch_alter_table("report_dispatches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_dispatches_status_sent_at"),
            ["status", "sent_at"],
            unique=False,
        )

    op.create_table(
        "dispatch_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispatch_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["report_dispatches.id"],
            name=op.f("fk_dispatch_events_dispatch_id_report_dispatches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_events")),
    )
    with op.batch_alter_table("dispatch_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dispatch_events_dispatch_id"), ["dispatch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dispatch_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dispatch_events_dispatch_id"))

    op.drop_table("dispatch_events")
    with op.batch_alter_table("report_dispatches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_dispatches_status_sent_at"))

    op.drop_table("report_dispatches")
    with op.batch_alter_table("report_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_calls_call_uniqueid"))

    op.drop_table("report_calls")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_status_next_attempt_at"))

    op.drop_table("outbox")
    with op.batch_alter_table("forward_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forward_attempts_report_id"))
        batch_op.drop_index(batch_op.f("ix_forward_attempts_call_uniqueid"))

    op.drop_table("forward_attempts")
    op.drop_table("agency_lines")
    op.drop_table("agency_accounts")
    with op.batch_alter_table("incident_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_reports_created_at"))

    op.drop_table("incident_reports")
    op.drop_table("agencies")
