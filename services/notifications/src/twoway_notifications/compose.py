"""Turns a due message and the current facts into an email: Jinja2 templates, .ics, MIME."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.message import Message as MimeMessage
from email.policy import Compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from twoway_shared.calendar import (
    Person,
    SeriesPlan,
    SeriesText,
    cancellation,
    invitation,
    occurrence_update,
    pair_series,
)
from twoway_shared.contract.calendar_token import parse_keys, sign

from twoway_notifications.config import NotificationsSettings
from twoway_notifications.domain.model import Contact, Message, Session, Template
from twoway_notifications.domain.rules import local_span, local_time, readable, readable_list
from twoway_notifications.mailer import Email

if TYPE_CHECKING:
    Part = MimeMessage[str, str | Header]  # headers kept as given: text or encoded words

TEMPLATES = Path(__file__).resolve().parent / "templates"
FALLBACK_LOCALE = "en"


@cache
def _environment(locale: str) -> Environment:
    # Each template is looked up in the exact locale, then its language, then English, so a
    # partial translation falls back file by file.
    tag = locale.replace("_", "-")
    folders = dict.fromkeys([tag, tag.split("-")[0].lower(), FALLBACK_LOCALE])
    env = Environment(
        loader=FileSystemLoader([str(TEMPLATES / f) for f in folders if (TEMPLATES / f).is_dir()]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The templates ship with the package and never change under a running process:
        # no stat of each file at every render.
        auto_reload=False,
    )
    env.filters["words"] = readable_list  # skills as words, not raw tags
    env.filters["word"] = readable
    return env


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
    organizer: str | None = None  # ORGANIZER of invitations; None: the address of mail_from
    calendar_keys: tuple[bytes, ...] = ()  # no keys: no subscription link in bookings
    calendar_base_url: str = "http://localhost:8082"

    @staticmethod
    def of(settings: NotificationsSettings) -> MailSettings:
        keys = settings.calendar_keys.get_secret_value() if settings.calendar_keys else None
        return MailSettings(
            mail_from=settings.mail_from,
            portal_url=settings.portal_url,
            organizer=settings.calendar_organizer,
            calendar_keys=tuple(parse_keys(keys)),
            calendar_base_url=settings.calendar_base_url,
        )

    @property
    def organizer_address(self) -> str:
        return _address_of(self.organizer or self.mail_from)

    def calendar_url(self, participant_id: str) -> str | None:
        """The person's calendar subscription link (CONTRACT section 8), if keys are set."""
        if not self.calendar_keys:
            return None
        token = sign(participant_id, self.calendar_keys)
        return f"{self.calendar_base_url.rstrip('/')}/calendars/{token}.ics"


def _sessions_for(message: Message, pair_sessions: Sequence[Session]) -> list[Session] | None:
    """The sessions a message shows in their current state; None when nothing is left to say."""
    by_id = {s.session_id: s for s in pair_sessions}
    if message.template is Template.BOOKING:
        booked = sorted((s for s in pair_sessions if s.is_held), key=lambda s: s.sequence)
        return booked or None
    if message.template in (Template.REMINDER, Template.SESSION_RESCHEDULED):
        session = by_id.get(message.session_id or "")
        return [session] if session is not None and session.is_scheduled else None
    if message.template is Template.FEEDBACK_REQUEST:
        session = by_id.get(message.session_id or "")
        return [session] if session is not None and session.is_held else None
    if message.template is Template.SESSION_CANCELLED:
        ids = message.session_ids or ((message.session_id,) if message.session_id else ())
        cancelled = [by_id[i] for i in ids if i in by_id]
        return sorted(cancelled, key=lambda s: s.sequence) or None
    return []


def series_plan(
    pair_id: str, pair_sessions: Sequence[Session], mentee_zone: str | None
) -> SeriesPlan | None:
    """The pair's recurring series, from the facts kept of its sessions."""
    return pair_series(pair_id, pair_sessions, mentee_zone)


def _name(contact: Contact | None, fallback: str) -> str:
    if contact is None or contact.display_name is None:
        return fallback
    return one_line(contact.display_name)


def _series_text(
    message: Message,
    recipient: Contact,
    partner: Contact | None,
    settings: MailSettings,
    portal: str,
) -> SeriesText:
    """SUMMARY names the partner; DESCRIPTION says what each learns and links to the pair."""
    assert recipient.email is not None
    me = _name(recipient, "You")
    them = _name(partner, "your partner")
    learns = message.details
    mine, theirs = (
        ("mentee_learns", "mentor_learns")
        if recipient.role == "mentee"
        else ("mentor_learns", "mentee_learns")
    )
    link = f"{portal}/pairs/{message.pair_id}"
    description = "\n".join(
        [
            f"Reverse mentoring: {me} and {them}.",
            f"{me} learns: {readable_list(learns.get(mine, [])) or 'to be agreed together'}.",
            f"{them} learns: {readable_list(learns.get(theirs, [])) or 'to be agreed together'}.",
            f"Your pair: {link}",
        ]
    )
    attendees = [Person(recipient.email, me)]
    if partner is not None and partner.email is not None:
        attendees.append(Person(partner.email, them))
    return SeriesText(
        summary=f"Reverse mentoring with {them}" if partner is not None else "Reverse mentoring",
        description=description,
        url=link,
        organizer=Person(settings.organizer_address, "Twoway"),
        attendees=tuple(attendees),
    )


def _attachment(
    message: Message,
    sessions: Sequence[Session],
    pair_sessions: Sequence[Session],
    text: SeriesText,
    mentee_zone: str | None,
    now: datetime,
) -> bytes | None:
    plan = series_plan(message.pair_id or "", pair_sessions, mentee_zone)
    if plan is None:
        return None
    if message.template is Template.BOOKING:
        return invitation(plan, text, now)
    if message.template is Template.SESSION_RESCHEDULED:
        return occurrence_update(plan, sessions[0].session_id, text, now)
    return cancellation(plan, [s.session_id for s in sessions], text, now)


class _SessionView:
    """A session as the templates show it, each text made only if a template asks for it."""

    def __init__(self, s: Session, zone: str, partner: Contact | None) -> None:
        self._s = s
        self._zone = zone
        self._other = partner.timezone if partner is not None else None
        self.sequence = s.sequence
        self.total = s.total
        self.revision = s.revision
        self.session_id = s.session_id

    @cached_property
    def starts(self) -> str:
        return local_time(self._s.starts_at, self._zone) if self._s.starts_at else ""

    @cached_property
    def ends(self) -> str:
        return local_time(self._s.ends_at, self._zone) if self._s.ends_at else ""

    @cached_property
    def span(self) -> str:
        s = self._s
        return local_span(s.starts_at, s.ends_at, self._zone) if s.starts_at and s.ends_at else ""

    @cached_property
    def partner_span(self) -> str:
        """The session in the partner's zone, when it differs from the recipient's."""
        s, other = self._s, self._other
        if other and other != self._zone and s.starts_at and s.ends_at:
            return local_span(s.starts_at, s.ends_at, other)
        return ""


_METHODS: dict[Template, str] = {
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
    people: Mapping[str, Contact] | None = None,
) -> Email | None:
    """The email for a message that may be sent, as it goes to the SMTP server, or None when
    its subject is gone.

    `people` holds the contacts of everyone the message names (`Message.people`).
    """
    assert recipient.email is not None
    assert recipient.display_name is not None
    sessions = _sessions_for(message, pair_sessions)
    if sessions is None:
        return None
    known_partner = partner if partner is not None and partner.reachable else None
    zone = recipient.timezone or "UTC"
    portal = settings.portal_url.rstrip("/")
    details = message.details
    named = people or {}
    context: dict[str, Any] = {
        "recipient": {"name": recipient.display_name, "role": recipient.role},
        "partner": None
        if known_partner is None
        else {"name": known_partner.display_name, "role": known_partner.role},
        "portal_url": portal,
        "pair_id": message.pair_id,
        "details": details,
        "sessions": [_SessionView(s, zone, known_partner) for s in sessions],
        "calendar_url": settings.calendar_url(recipient.participant_id)
        if message.template is Template.BOOKING
        else None,
        "deadline": local_time(datetime.fromisoformat(details["expires_at"]), zone)
        if details.get("expires_at")
        else None,
        "mentor": _name(named.get(str(details.get("mentor_id", ""))), "(name not known)"),
        "mentee": _name(named.get(str(details.get("mentee_id", ""))), "(name not known)"),
        "last_activity": local_time(datetime.fromisoformat(details["last_activity_at"]), zone)
        if details.get("last_activity_at")
        else None,
    }
    rendered = render(message.template, recipient.locale, context)
    alternative = [_text_part("plain", rendered.text), _text_part("html", rendered.html)]
    attachment: MimeMessage | None = None
    method = _METHODS.get(message.template)
    if method is not None:
        mentee = recipient if recipient.role == "mentee" else known_partner
        text = _series_text(message, recipient, known_partner, settings, portal)
        ics = _attachment(
            message, sessions, pair_sessions, text, mentee.timezone if mentee else None, now
        )
        if ics is not None:
            attachment = _calendar_part(ics, method)
    sender = _sender(settings.mail_from)
    mail: Part = MimeMessage()
    mail["From"] = sender.header
    mail["To"] = _mailbox("To", one_line(recipient.display_name), recipient.email)
    mail["Subject"] = _words("Subject", rendered.subject)
    mail["Message-ID"] = f"<{message.notification_id}@twoway>"
    mail["Date"] = format_datetime(now)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    mail["X-Twoway-Template"] = message.template.value
    mail["MIME-Version"] = "1.0"
    if attachment is None:
        _multipart(mail, "alternative", alternative)
    else:
        inner = _multipart(MimeMessage(), "alternative", alternative)
        _multipart(mail, "mixed", [inner, attachment])
    return Email(sender.address, (recipient.email,), _wire(mail))


# ---------------------------------------------------------------- the text on the wire
# Built with the email package's compat32 classes: headers are kept as given (the default
# policy parses each one into objects, which cost as much as the rest of the email), so
# every header is written here already 7-bit clean, non-ASCII words RFC 2047 encoded.


class _AsGiven(Compat32):
    """compat32 writing a short ASCII header line as it is: its folding (the Header class,
    for every header) would change nothing and cost a third of writing the email."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= _FOLD_AT
            and "\r" not in value
            and "\n" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD stay within 78 characters
_WIRE = _AsGiven(linesep="\r\n")
_SHORT = 60  # header text that fits on one line whatever its name


@dataclass(frozen=True)
class _Sender:
    address: str  # the envelope's
    header: str | Header  # the From header


@cache
def _sender(mail_from: str) -> _Sender:
    name, address = parseaddr(mail_from)
    address = address or "no-reply@twoway.local"
    return _Sender(address, _mailbox("From", name, address))


def _words(field: str, text: str) -> str | Header:
    """Header text as written: RFC 2047 encoded words (75 characters at most) if not ASCII,
    folded at spaces if long."""
    if text.isascii():
        return text if len(text) <= _SHORT else Header(text, "us-ascii", header_name=field)
    return Header(text, "utf-8", header_name=field)


def _mailbox(field: str, name: str, address: str) -> str | Header:
    """`Name <address>`, the name quoted or RFC 2047 encoded as it needs."""
    if not name or name.isascii():
        return _words(field, formataddr((name, address)))
    mailbox = Header(name, "utf-8", header_name=field)
    mailbox.append(f"<{address}>", "us-ascii")
    return mailbox


def _text_part(subtype: str, text: str) -> MimeMessage:
    """A UTF-8 text part, quoted-printable: readable, 7-bit, lines within 76 characters."""
    part = MimeMessage()
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(binascii.b2a_qp(text.encode(), istext=True).decode("ascii"))
    return part


def _calendar_part(ics: bytes, method: str) -> MimeMessage:
    """The .ics attachment, base64: its bytes (and CRLF line ends) arrive exactly."""
    part = MimeMessage()
    part.add_header("Content-Type", "text/calendar", charset="utf-8", method=method)
    part["Content-Transfer-Encoding"] = "base64"
    filename = "invite.ics" if method == "REQUEST" else "cancel.ics"
    part.add_header("Content-Disposition", "attachment", filename=filename)
    part.set_payload(base64.encodebytes(ics).decode("ascii"))
    return part


def _multipart(mail: MimeMessage, subtype: str, parts: Sequence[MimeMessage]) -> MimeMessage:
    # "=_" occurs in no quoted-printable or base64 text, so the boundary (given, or the
    # generator would search the whole text for a free one) cannot occur in a part.
    boundary = f"=_{subtype}_{secrets.token_hex(12)}"
    mail["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    mail.set_payload([*parts])
    return mail


def _wire(mail: MimeMessage) -> bytes:
    """The message flattened, with CRLF line ends."""
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(mail)
    return out.getvalue()


def one_line(name: str) -> str:
    """A name fit for a header: the contract allows any text, headers allow no line breaks."""
    return " ".join("".join(c if c.isprintable() else " " for c in name).split())


def _address_of(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    return address or str(Address(addr_spec="no-reply@twoway.local"))


# ---------------------------------------------------------------- off the event loop


@dataclass(frozen=True)
class Draft:
    """What `compose` needs for one message, sent to a worker process as it is."""

    message: Message
    recipient: Contact
    partner: Contact | None
    pair_sessions: tuple[Session, ...]
    people: Mapping[str, Contact] = field(default_factory=dict)


@dataclass(frozen=True)
class NotComposed:
    """A message whose email could not be built: the kind of error only (its text may quote
    personal data)."""

    error: str


Composed = Email | None | NotComposed


def compose_drafts(
    drafts: Sequence[Draft], settings: MailSettings, now: datetime
) -> list[Composed]:
    """`compose` for each draft; a draft that fails does not stop the others."""
    built: list[Composed] = []
    for d in drafts:
        try:
            built.append(
                compose(d.message, d.recipient, d.partner, d.pair_sessions, settings, now, d.people)
            )
        except Exception as exc:
            built.append(NotComposed(type(exc).__name__))
    return built


COMPOSE_PROCESSES = min(2, os.cpu_count() or 1)
"""Worker processes that build emails: building one (templates, iCalendar, MIME) costs a
millisecond or more of CPU, which on the event loop would hold up every SMTP exchange and
consumed record of the instance; threads would share one core. A worker returns each email
as the bytes the SMTP client writes, so the event loop neither unpickles objects nor
flattens them."""

CHUNK = 16
"""Drafts per trip to a worker: small enough that the first emails of a batch are built (and
sent) while the workers build the rest, large enough that a trip costs little."""
_pool: ProcessPoolExecutor | None = None


def _exit_with(parent: int) -> None:
    """A worker's initializer: the worker leaves once `parent` (the service) is gone. A
    service killed with SIGKILL cannot shut its pool down, and its idle workers would wait
    on their queue for ever, one pair more with each kill."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-service", daemon=True).start()


def _compose_pool() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # Spawned, not forked: a fork of a process running an event loop and threads may
        # inherit a lock some other thread held.
        _pool = ProcessPoolExecutor(
            COMPOSE_PROCESSES,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )
    return _pool


async def compose_in_turn(
    drafts: Sequence[Draft], settings: MailSettings, now: datetime, chunk: int = CHUNK
) -> AsyncIterator[list[Composed]]:
    """`compose_drafts` in the worker processes, `chunk` drafts at a time, every chunk given
    to the workers at once; yields each chunk's results, in draft order, as soon as it and
    the chunks before it are built, so the first emails can go while the rest are built."""
    global _pool
    chunks = [drafts[i : i + chunk] for i in range(0, len(drafts), chunk)]
    if COMPOSE_PROCESSES < 2 or len(drafts) < chunk:
        for c in chunks:
            yield compose_drafts(c, settings, now)
        return
    loop = asyncio.get_running_loop()
    pool = _compose_pool()
    futures: list[asyncio.Future[list[Composed]]] = []
    n = 0  # chunks yielded
    try:
        # Given to the pool inside the try: a pool whose idle worker died refuses at once.
        futures = [loop.run_in_executor(pool, compose_drafts, c, settings, now) for c in chunks]
        for future in futures:
            yield await future
            n += 1
    except BrokenProcessPool:
        # A worker died (killed, out of memory): a new pool next time, the rest built here.
        if _pool is pool:
            _pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        for rest in futures[n:]:
            rest.cancel()
        for c in chunks[n:]:
            yield compose_drafts(c, settings, now)


async def compose_off_loop(
    drafts: Sequence[Draft], settings: MailSettings, now: datetime
) -> list[Composed]:
    """`compose_drafts` in the worker processes, in draft order."""
    return [built async for part in compose_in_turn(drafts, settings, now) for built in part]
