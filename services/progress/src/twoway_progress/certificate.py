"""A one-page PDF certificate of continuing-education credits (fpdf2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF

# A Unicode font when the system has one (names are not only Latin); else the PDF core font.
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
MAX_TOPICS_SHOWN = 15
"""More would not fit the page; the rest are counted."""


@dataclass(frozen=True)
class CertificateFacts:
    """What the certificate says; all of it comes from progress's own records."""

    credit_id: str
    display_name: str
    role: str
    programme_name: str
    programme_id: str
    first_session_at: datetime | None
    last_session_at: datetime | None
    sessions_completed: int
    minutes: int
    credits: float
    topics: list[str]
    issued_at: datetime


def _day(moment: datetime | None) -> str:
    return f"{moment:%d %B %Y}".lstrip("0") if moment is not None else "-"


def _font(pdf: FPDF) -> tuple[str, bool]:
    for folder in _FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            pdf.add_font("DejaVu", "", str(regular))
            pdf.add_font("DejaVu", "B", str(bold))
            return "DejaVu", True
    return "Helvetica", False


def render_certificate(facts: CertificateFacts) -> bytes:
    """The certificate as PDF bytes: one A4 landscape page."""
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title(f"Certificate {facts.credit_id}")
    pdf.set_creator("Twoway")
    pdf.add_page()
    family, unicode_ok = _font(pdf)

    def text(value: str) -> str:
        return value if unicode_ok else value.encode("latin-1", "replace").decode("latin-1")

    width = pdf.w - 40
    pdf.set_draw_color(40, 70, 120)
    pdf.set_line_width(1.2)
    pdf.rect(10, 10, pdf.w - 20, pdf.h - 20)
    pdf.set_line_width(0.4)
    pdf.rect(13, 13, pdf.w - 26, pdf.h - 26)

    pdf.set_xy(20, 28)
    pdf.set_text_color(40, 70, 120)
    pdf.set_font(family, "B", 30)
    pdf.cell(width, 14, "Certificate of Continuing Education", align="C")
    pdf.set_text_color(30, 30, 30)
    pdf.set_font(family, "", 14)
    pdf.set_xy(20, 50)
    pdf.cell(width, 8, "This certifies that", align="C")
    pdf.set_xy(20, 62)
    pdf.set_font(family, "B", 26)
    pdf.cell(width, 12, text(facts.display_name), align="C")
    pdf.set_font(family, "", 14)
    pdf.set_xy(20, 80)
    programme = facts.programme_name or facts.programme_id
    pdf.multi_cell(
        width,
        8,
        text(
            f"took part as {facts.role} in the reverse-mentoring programme \u201c{programme}\u201d"
            if unicode_ok
            else f'took part as {facts.role} in the reverse-mentoring programme "{programme}"'
        ),
        align="C",
    )
    pdf.set_xy(20, 98)
    pdf.cell(
        width,
        8,
        f"from {_day(facts.first_session_at)} to {_day(facts.last_session_at)}, "
        f"completing {facts.sessions_completed} sessions ({facts.minutes} minutes).",
        align="C",
    )
    pdf.set_xy(20, 118)
    pdf.set_font(family, "B", 40)
    pdf.set_text_color(40, 70, 120)
    credits = f"{facts.credits:.1f}"
    pdf.cell(width, 18, f"{credits} credits", align="C")
    pdf.set_text_color(30, 30, 30)
    pdf.set_font(family, "", 12)
    pdf.set_xy(30, 145)
    shown = facts.topics[:MAX_TOPICS_SHOWN]
    more = len(facts.topics) - len(shown)
    topics = ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "-"
    pdf.multi_cell(width - 20, 7, text(f"Topics learned: {topics}"), align="C")
    pdf.set_font(family, "", 9)
    pdf.set_text_color(90, 90, 90)
    pdf.set_xy(20, pdf.h - 34)
    pdf.cell(
        width,
        6,
        f"Issued {_day(facts.issued_at)}. Credits are counted in whole fifths of the "
        "programme's credit minutes.",
        align="C",
    )
    pdf.set_xy(20, pdf.h - 28)
    pdf.cell(width, 6, f"Certificate id {facts.credit_id}", align="C")
    return bytes(pdf.output())
