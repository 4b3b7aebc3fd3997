"""Turns a due message and the current facts into an email: Jinja2 templates, .ics, MIME."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from twoway_notifications.domain.calendar import Attendee, Method, build_calendar
from twoway_notifications.domain.model import Contact, Message, Session, Template
from twoway_notifications.domain.rules import local_time

TEMPLATES = Path(__file__).resolve().parent / "templates"
FALLBACK_LOCALE = "en"


@cache
def _environment(locale: str) -> Environment:
    # Each template is looked up in the exact locale, then its language, then English, so a
    # partial translation falls back file by file.
    tag = locale.replace("_", "-")
    folders = dict.fromkeys([tag, tag.split("-")[0].lower(), FALLBACK_LOCALE])
    return Environment(
        loader=FileSystemLoader([str(TEMPLATES / f) for f in folders if (TEMPLATES / f).is_dir()]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(template: Template, locale: str, context: dict[str, Any]) -> Rendered:
    """The subject (set in the text template) and both bodies of one message."""
    env = _environment(locale)
    text_module = env.get_template(f"{template.value}.txt").make_module(context)
    html = env.get_template(f"{template.value}.html").render(context)
    subject = " ".join(str(getattr(text_module, "subject", "Twoway")).split())
    return Rendered(subject=subject, text=str(text_module), html=html)


@dataclass(frozen=True)
class MailSettings:
    mail_from: str
    portal_url: str


def _sessions_for(message: Message, pair_sessions: Sequence[Session]) -> list[Session] | None:
    """The sessions a message shows in their current state; None when nothing is left to say."""
    by_id = {s.session_id: s for s in pair_sessions}
    if message.template is Template.BOOKING:
        booked = sorted((s for s in pair_sessions if s.is_scheduled), key=lambda s: s.sequence)
        return booked or None
    if message.template in (Template.REMINDER, Template.SESSION_RESCHEDULED):
        session = by_id.get(message.session_id or "")
        return [session] if session is not None and session.is_scheduled else None
    if message.template is Template.SESSION_CANCELLED:
        ids = message.session_ids or ((message.session_id,) if message.session_id else ())
        cancelled = [by_id[i] for i in ids if i in by_id]
        return sorted(cancelled, key=lambda s: s.sequence) or None
    return []


_METHODS: dict[Template, Method] = {
    Template.BOOKING: "REQUEST",
    Template.SESSION_RESCHEDULED: "REQUEST",
    Template.SESSION_CANCELLED: "CANCEL",
}


def compose(
    message: Message,
    recipient: Contact,
    partner: Contact | None,
    pair_sessions: Sequence[Session],
    settings: MailSettings,
    now: datetime,
) -> EmailMessage | None:
    """The email for a message that may be sent, or None when its subject is gone."""
    assert recipient.email is not None
    assert recipient.display_name is not None
    sessions = _sessions_for(message, pair_sessions)
    if sessions is None:
        return None
    known_partner = partner if partner is not None and partner.reachable else None
    zone = recipient.timezone or "UTC"
    context: dict[str, Any] = {
        "recipient": {"name": recipient.display_name, "role": recipient.role},
        "partner": None
        if known_partner is None
        else {"name": known_partner.display_name, "role": known_partner.role},
        "portal_url": settings.portal_url.rstrip("/"),
        "pair_id": message.pair_id,
        "details": message.details,
        "sessions": [
            {
                "sequence": s.sequence,
                "total": s.total,
                "starts": local_time(s.starts_at, zone) if s.starts_at else "",
                "ends": local_time(s.ends_at, zone) if s.ends_at else "",
                "revision": s.revision,
            }
            for s in sessions
        ],
    }
    rendered = render(message.template, recipient.locale, context)
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = formataddr((one_line(recipient.display_name), recipient.email))
    mail["Subject"] = rendered.subject
    mail["Message-ID"] = f"<{message.notification_id}@twoway>"
    mail["Date"] = format_datetime(now)
    mail["X-Twoway-Template"] = message.template.value
    mail.set_content(rendered.text)
    mail.add_alternative(rendered.html, subtype="html")
    method = _METHODS.get(message.template)
    if method is not None:
        attendees = [Attendee(recipient.email, one_line(recipient.display_name))]
        if known_partner is not None:
            assert known_partner.email is not None
            assert known_partner.display_name is not None
            attendees.append(Attendee(known_partner.email, one_line(known_partner.display_name)))
        ics = build_calendar(
            method,
            sessions,
            organizer=_address_of(settings.mail_from),
            attendees=attendees,
            summary="Twoway mentoring session",
            now=now,
        )
        mail.add_attachment(
            ics,
            maintype="text",
            subtype="calendar",
            filename="invite.ics" if method == "REQUEST" else "cancel.ics",
            params={"method": method, "charset": "utf-8"},
        )
    return mail


def one_line(name: str) -> str:
    """A name fit for a header: the contract allows any text, headers allow no line breaks."""
    return " ".join("".join(c if c.isprintable() else " " for c in name).split())


def _address_of(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    return address or str(Address(addr_spec="no-reply@twoway.local"))
