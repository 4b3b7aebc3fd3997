"""Settings of the scheduling service."""

from __future__ import annotations

from pydantic import Field
from twoway_shared.platform.settings import CalendarSettings


class SchedulingSettings(CalendarSettings):
    """TWOWAY_* settings of the scheduling service (CONTRACT.md section 7)."""

    http_port: int = Field(
        8082, ge=0, le=65535, description="Port of health, metrics and read API."
    )
