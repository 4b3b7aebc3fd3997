"""`twoway dlq` shows each bad record once, whichever services refused it."""

from __future__ import annotations

import io

from rich.console import Console
from twoway_dev.toolkit.cli import Toolkit
from twoway_dev.toolkit.tail import DeadLetter, Record, group_dead_letters

TOPIC = "twoway.enrolments.v1"


def letter(consumer: str, offset: int, error: str, *, at: int = 0) -> DeadLetter:
    headers = {
        "x-twoway-error": error,
        "x-twoway-consumer": consumer,
        "x-original-topic": TOPIC,
        "x-original-partition": "3",
        "x-original-offset": str(offset),
    }
    return DeadLetter.of(
        Record("twoway.deadletter.v1", 0, at, 1_800_000_000_000 + at, b"E1", b"not json", headers)
    )


NOT_JSON = "record value is not JSON: unexpected character: line 1 column 1 (char 0)"
LETTERS = [
    letter("matching", 17, NOT_JSON, at=0),
    letter("scheduling", 17, NOT_JSON, at=1),
    letter("notifications", 17, NOT_JSON, at=2),
    letter("matching", 18, "role changed from mentor to mentee", at=3),
    letter("scheduling", 18, "participant E1 changed programme", at=4),
]


def test_dead_letters_of_one_record_are_one_bad_record() -> None:
    bad = group_dead_letters(LETTERS)

    assert [b.first.original for b in bad] == [f"{TOPIC}[3]@17", f"{TOPIC}[3]@18"]
    assert bad[0].consumers == "matching,scheduling,notifications"
    assert bad[0].error == NOT_JSON
    assert bad[1].error == (
        "matching: role changed from mentor to mentee | scheduling: participant E1 changed "
        "programme"
    )


def test_piped_output_is_one_line_per_bad_record() -> None:
    out = io.StringIO()
    Toolkit(Console(file=out), Console(file=io.StringIO())).show_dead_letters("dlq", LETTERS)

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[1:] == [
        "matching,scheduling,notifications",
        f"{TOPIC}[3]@17",
        "(not JSON)",
        "E1",
        NOT_JSON,
    ]


def test_the_terminal_table_shows_each_record_once_and_its_whole_reason() -> None:
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100, color_system=None)
    Toolkit(terminal, Console(file=io.StringIO())).show_dead_letters("dlq", LETTERS)

    text = out.getvalue()
    assert "2 bad record(s), 5 dead letter(s) on dlq" in text
    assert text.count(f"{TOPIC}[3]@17") == 1
    assert text.count(f"{TOPIC}[3]@18") == 1
    # The reason wraps inside its column instead of being cut.
    reason_words = " ".join(
        line.split("│")[4].strip() for line in text.splitlines() if line.count("│") == 5
    )
    assert " ".join(NOT_JSON.split()) in " ".join(reason_words.split())
    assert max(len(line) for line in text.splitlines()) <= 100
