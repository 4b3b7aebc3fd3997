"""Render a booking email as a person sees it (headers, HTML body, the invitation's sessions).

    uv run python docs/calendar/render_booking.py   # writes docs/calendar/booking.html
    chromium --headless --no-sandbox --hide-scrollbars --window-size=900,870 \
        --screenshot=docs/calendar/booking.png docs/calendar/booking.html
"""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from twoway_dev.testing.calendar_client import expand
from twoway_notifications.compose import MailSettings, compose
from twoway_notifications.domain.model import Contact, Message, Session, Template

HERE = Path(__file__).resolve().parent
LONDON = ZoneInfo("Europe/London")
DANA = Contact("E1", "mentee", "Dana Whitfield", "dana.whitfield@example.com", "Europe/London")
SAM = Contact("M1", "mentor", "Sam Okafor", "sam.okafor@example.com", "America/New_York")


def sessions() -> list[Session]:
    """Six Wednesdays 13:00 London from 3 March 2027; the third moved to Thursday (US DST)."""
    out = []
    for n in range(1, 7):
        day = (datetime(2027, 3, 3) + timedelta(weeks=n - 1)).date()
        starts = datetime.combine(day, datetime(2027, 3, 3, 13, 0).time(), LONDON).astimezone(UTC)
        out.append(
            Session(
                f"s{n}", "pair-7", "M1", "E1", n, 6, starts, starts + timedelta(minutes=30), 0,
                "scheduled", series_zone="Europe/London", series_weeks=1,
            )
        )  # fmt: skip
    moved = datetime(2027, 3, 18, 13, 0, tzinfo=LONDON).astimezone(UTC)
    out[2] = replace(out[2], starts_at=moved, ends_at=moved + timedelta(minutes=30))
    return out


def main() -> None:
    settings = MailSettings(
        mail_from="Twoway <mentoring@example.com>",
        portal_url="https://mentoring.example.com",
        calendar_keys=(b"demo-key",),
        calendar_base_url="https://calendar.mentoring.example.com",
    )
    message = Message(
        "b9f2c1d0-booking", Template.BOOKING, "E1", "M1", "pair-7", None, "ev-1",
        details={"mentee_learns": ["generative-ai", "data-visualisation"],
                 "mentor_learns": ["leadership", "stakeholder-management"]},
    )  # fmt: skip
    composed = compose(
        message, DANA, SAM, sessions(), settings, datetime(2027, 2, 1, 9, tzinfo=UTC)
    )
    assert composed is not None
    mail = message_from_bytes(composed.data, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("html",))
    assert body is not None
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    ics = part.get_payload(decode=True)
    assert isinstance(ics, bytes)
    occurrences = expand(ics, datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    rows = "".join(
        f"<li>{m.starts_at.astimezone(LONDON):%a %d %b %Y %H:%M}-"
        f"{m.ends_at.astimezone(LONDON):%H:%M}</li>"
        for m in occurrences
    )
    headers = "".join(
        f"<tr><th>{name}</th><td>{html.escape(str(mail[name]))}</td></tr>"
        for name in ("From", "To", "Subject", "Auto-Submitted")
    )
    inner = str(body.get_content())
    inner = inner[inner.index("<body") : inner.index("</body>")].split(">", 1)[1]
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ font-family: 'DejaVu Sans', sans-serif; margin: 24px; background: #f3f4f6; }}
.mail {{ background: white; border: 1px solid #d1d5db; border-radius: 8px; padding: 20px; }}
table {{ border-collapse: collapse; margin-bottom: 12px; }} th {{ text-align: left;
color: #6b7280; padding-right: 12px; font-weight: normal; }}
.att {{ margin-top: 16px; border-top: 1px solid #e5e7eb; padding-top: 12px; font-size: 14px; }}
.ics {{ display: inline-block; background: #eef2ff; border: 1px solid #c7d2fe;
border-radius: 6px; padding: 8px 12px; }}
</style></head><body><div class="mail"><table>{headers}</table><hr>{inner}
<div class="att"><div class="ics">invite.ics: one recurring series,
UID pair-7@twoway (METHOD:REQUEST) &mdash; a calendar expands it to:<ul>{rows}</ul></div></div>
</div></body></html>"""
    (HERE / "booking.html").write_text(page, encoding="utf-8")
    (HERE / "booking.ics").write_bytes(ics)


if __name__ == "__main__":
    main()
