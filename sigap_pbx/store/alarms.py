"""Alarms: conditions a supervisor must see, from raising to clearing and acknowledgement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.models import Base


class Alarm(Base):
    """One alarm. ``cleared_at`` is NULL while the condition still holds."""

    __tablename__ = "alarms"
    __table_args__ = (Index(None, "raised_at"), Index(None, "kind", "subject"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String)
    # What the alarm is about: an endpoint, a queue or a shift, as text.
    subject: Mapped[str] = mapped_column(String)
    severity: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String)
    detail: Mapped[dict[str, Any]]
