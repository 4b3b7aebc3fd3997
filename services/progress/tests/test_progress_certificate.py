"""The certificate is one landscape page that renders: looked at as an image (pdftoppm)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from PIL import Image
from twoway_progress.certificate import CertificateFacts, render_certificate

FACTS = CertificateFacts(
    credit_id="7b0c6a52-9d8e-5f41-a3b2-0e9d1c2b3a4f",
    display_name="Zoë Ångström-Nakamura",
    role="mentee",
    programme_name="Digital Leaders 2027",
    programme_id="RM-2027",
    first_session_at=datetime(2027, 1, 11, 9, 0, tzinfo=UTC),
    last_session_at=datetime(2027, 3, 29, 9, 30, tzinfo=UTC),
    sessions_completed=11,
    minutes=330,
    credits=6.6,
    topics=["generative-ai", "prompting", "tiktok", *(f"topic-{i}" for i in range(30))],
    issued_at=datetime(2027, 3, 29, 10, 0, tzinfo=UTC),
)


def darkest(grey: Image.Image) -> int:
    low, _ = cast(tuple[int, int], grey.getextrema())
    return low


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils: make system-deps")
def test_the_certificate_is_one_landscape_page_with_ink_where_the_text_is(tmp_path: Path) -> None:
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(render_certificate(FACTS))
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True)
    assert re.search(r"^Pages:\s+1$", info.stdout, re.MULTILINE)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-singlefile", str(pdf), str(tmp_path / "page")],
        check=True,
    )
    with Image.open(tmp_path / "page.png") as page:
        width, height = page.size
        assert width > height  # landscape
        grey = page.convert("L")
        # The title band and the credits line carry ink; the margins outside the frame do not.
        title = grey.crop((width // 4, height // 10, 3 * width // 4, height // 5))
        assert darkest(title) < 128
        corner = grey.crop((0, 0, width // 40, height // 40))
        assert darkest(corner) > 200
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True)
    words = " ".join(text.stdout.split())
    assert "Zoë Ångström-Nakamura" in words
    assert "6.6 credits" in words
    assert "from 11 January 2027 to 29 March 2027" in words
    assert "and 18 more" in words  # 33 topics, 15 shown
