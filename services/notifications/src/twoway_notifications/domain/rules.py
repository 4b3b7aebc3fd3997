"""When reminders are due, how long to back off, whether a message can go, and how times read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from twoway_notifications.domain.model import NEEDS_PARTNER, Contact, Message, Template

DEFAULT_REMINDER_MINUTES = (1440,)
GIVE_UP_AFTER = timedelta(hours=24)
MAX_BACKOFF = timedelta(hours=1)


def reminder_times(
    starts_at: datetime, minutes: tuple[int, ...] | list[int], now: datetime
) -> list[tuple[int, datetime]]:
    """(offset, due time) of each reminder still ahead; one already past is skipped for good."""
    due = [(m, starts_at - timedelta(minutes=m)) for m in dict.fromkeys(minutes)]
    return [(m, at) for m, at in due if at > now]


FEEDBACK_DELAY = timedelta(minutes=10)


def feedback_request_time(ends_at: datetime) -> datetime:
    """People are asked about a session ten minutes after it ends."""
    return ends_at + FEEDBACK_DELAY


def backoff(attempts: int, base: timedelta) -> timedelta:
    """Delay before attempt `attempts + 1`: base, 2 base, 4 base, ... capped at an hour."""
    delay: timedelta = base * (2 ** max(attempts - 1, 0))
    return min(delay, MAX_BACKOFF)


def gives_up(first_attempt_at: datetime, now: datetime) -> bool:
    """A temporary failure becomes permanent 24 h after the first attempt."""
    return now - first_attempt_at >= GIVE_UP_AFTER


class Verdict(StrEnum):
    """What to do with a due message."""

    SEND = "send"
    WAIT = "wait"  # contact details not known yet; resumes when they arrive
    SKIP = "skip"  # opted out, erased, or nothing left to tell; never reported as failed


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str = ""


def decide(message: Message, recipient: Contact | None, partner: Contact | None) -> Decision:
    """Whether a due message can be sent now, must wait, or is dropped."""
    if recipient is not None and recipient.erased:
        return Decision(Verdict.SKIP, "recipient erased")
    if recipient is not None and not recipient.notify_email:
        return Decision(Verdict.SKIP, "recipient opted out of email")
    reminder = message.template is Template.REMINDER
    if recipient is not None and reminder and not recipient.notify_reminders:
        return Decision(Verdict.SKIP, "recipient opted out of reminders")
    if recipient is None or not recipient.reachable:
        return Decision(Verdict.WAIT, "recipient details unknown")
    if message.template in NEEDS_PARTNER and message.partner_id is not None:
        if partner is not None and partner.erased:
            return Decision(Verdict.SKIP, "partner erased")
        if partner is None or not partner.reachable:
            return Decision(Verdict.WAIT, "partner details unknown")
    return Decision(Verdict.SEND)


def local_time(at: datetime, timezone: str | None) -> str:
    """`Wednesday 3 March 2027, 10:30 (Europe/London)`: the recipient's wall clock, zone named."""
    return _local_time(at.astimezone(UTC), timezone or "UTC")


def local_span(starts_at: datetime, ends_at: datetime, timezone: str | None) -> str:
    """`Wednesday 3 March 2027, 10:30-11:00 (Europe/London)`; the end's date if it differs."""
    return _local_span(starts_at.astimezone(UTC), ends_at.astimezone(UTC), timezone or "UTC")


# Kept by instant (in UTC: two wall-clock times an hour apart when clocks go back compare
# equal), as a pair's two emails show the same times, each in both zones.
@lru_cache(maxsize=4096)
def _local_time(at: datetime, zone: str) -> str:
    local = at.astimezone(ZoneInfo(zone))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} ({zone})"


@lru_cache(maxsize=4096)
def _local_span(starts_at: datetime, ends_at: datetime, zone: str) -> str:
    start = starts_at.astimezone(ZoneInfo(zone))
    end = ends_at.astimezone(ZoneInfo(zone))
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%A} {end.day} {end:%B, %H:%M}"
    return f"{start:%A} {start.day} {start:%B %Y, %H:%M}\u2013{until} ({zone})"


# Tags are lower-case with dashes (CONTRACT section 3); these read better in capitals.
_ACRONYMS = frozenset(
    {"ai", "ml", "ux", "ui", "api", "apis", "hr", "it", "esg", "seo", "crm", "erp", "sql"}
    | {"okr", "okrs", "kpi", "kpis", "b2b", "b2c", "ar", "vr", "ci", "cd", "iot", "llm", "llms"}
    | {"gdpr", "dei", "pr", "qa", "saas"}
)


def readable(tag: str) -> str:
    """`generative-ai` -> `generative AI`: a tag as words a person reads."""
    words = tag.replace("_", "-").split("-")
    return " ".join(w.upper() if w in _ACRONYMS else w for w in words if w)


def readable_list(tags: list[str] | tuple[str, ...]) -> str:
    """`generative AI, leadership and public speaking`."""
    words = [readable(t) for t in tags]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


def smtp_error(code: int | None, text: str) -> str:
    """A failure reason without personal data: servers often echo the address they refuse."""
    first_line = _ADDRESS.sub("<recipient>", text.strip().splitlines()[0] if text.strip() else "")
    reason = f"SMTP {code} {first_line}" if code is not None else first_line
    return (reason.strip() or "SMTP failure")[:300]
