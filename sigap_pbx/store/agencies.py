"""Agency directory tables: the agencies that act on reports, their lines and accounts.

An agency (fire, police, health, disaster, public order, ...) is reached two ways: by
phone, through its lines in priority order, and through its app, by webhook and by
the portal accounts of its staff.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.models import Base, _check_in


class AgencyKind(enum.StrEnum):
    FIRE = "fire"
    POLICE = "police"
    HEALTH = "health"
    DISASTER = "disaster"
    PUBLIC_ORDER = "public_order"
    OTHER = "other"


class LineKind(enum.StrEnum):
    """How a line is dialled: a registered SIP endpoint, or a number on the trunk."""

    ENDPOINT = "endpoint"
    NUMBER = "number"


class Agency(Base):
    """One agency, identified by a short code used in feature codes and the API."""

    __tablename__ = "agencies"
    __table_args__ = (
        CheckConstraint(_check_in("kind", AgencyKind), name="kind"),
        UniqueConstraint("code"),
        UniqueConstraint("dial_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String)
    # One or two digits that pick the agency in operators' feature codes.
    dial_code: Mapped[str | None] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Shipped sample data with placeholder numbers, to be replaced before use.
    sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AgencyLine(Base):
    """One phone line of an agency. Lower priority numbers are tried first."""

    __tablename__ = "agency_lines"
    __table_args__ = (
        CheckConstraint(_check_in("kind", LineKind), name="kind"),
        UniqueConstraint("agency_id", "priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    priority: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String)
    # An endpoint name or a dialled number, validated before it is stored.
    target: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String, default="")
    # Local hours when the line is staffed, "HH:MM-HH:MM"; empty means always.
    hours: Mapped[str] = mapped_column(String, default="")
    backup: Mapped[bool] = mapped_column(Boolean, default=False)


class AgencyAccount(Base):
    """A portal account of an agency's staff (sign-in comes with the web accounts)."""

    __tablename__ = "agency_accounts"
    __table_args__ = (UniqueConstraint("username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    username: Mapped[str] = mapped_column(String)
    display_name: Mapped[str] = mapped_column(String, default="")
