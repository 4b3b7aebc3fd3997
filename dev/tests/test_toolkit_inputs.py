"""HR export parsing: CSV and JSONL rows to valid profiles, invalid rows with line and reason."""

from __future__ import annotations

import orjson
import pytest
from twoway_dev.toolkit.generate import generate_cohort
from twoway_dev.toolkit.inputs import (
    RowError,
    format_of,
    parse_availability,
    parse_csv,
    parse_jsonl,
    to_csv,
    to_jsonl,
)
from twoway_shared.contract import ParticipantEnrolled, ParticipantUpdated

HEADER = (
    "participant_id,programme_id,role,display_name,email,grade,department,manager_id,"
    "location,timezone,languages,offers,wants,availability,capacity,locale,"
    "notify_email,notify_reminders"
)
DANA = (
    "E12345,RM-2027,mentee,Dana Whitfield,dana.whitfield@example.com,24,Finance,E00042,"
    "London,Europe/London,en-GB; fr,Leadership|corporate finance,Generative AI; social media,"
    '"mon 09:00-12:00; thu 14:00-24:00",,en-GB,true,false'
)
SAM = (
    "E20001,RM-2027,mentor,Sam Okafor,sam.okafor@example.com,6,Marketing,,,America/New_York,"
    'en,TikTok,negotiation,"Tue 9:30-11:00",2,,,'
)


def csv_of(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def test_a_csv_row_becomes_the_profile_it_describes() -> None:
    parsed = parse_csv(csv_of(DANA, SAM))

    assert parsed.errors == []
    dana, sam = parsed.profiles
    assert isinstance(dana, ParticipantEnrolled)
    assert dana.participant_id == "E12345"
    assert dana.grade == 24
    assert dana.manager_id == "E00042"
    assert dana.languages == ["en-GB", "fr"]
    assert dana.offers == ["leadership", "corporate-finance"]
    assert dana.wants == ["generative-ai", "social-media"]
    assert [(w.day, w.start, w.end) for w in dana.availability] == [
        ("mon", "09:00", "12:00"),
        ("thu", "14:00", "24:00"),
    ]
    assert (dana.notify.email, dana.notify.reminders) == (True, False)
    assert dana.locale == "en-GB"
    assert sam.manager_id is None
    assert sam.location is None
    assert sam.capacity == 2
    assert sam.locale == "en"
    assert [(w.day, w.start, w.end) for w in sam.availability] == [("tue", "09:30", "11:00")]
    assert (sam.notify.email, sam.notify.reminders) == (True, True)
    assert [row.line for row in parsed.valid] == [2, 3]


def test_updated_reads_the_rows_as_participant_updated() -> None:
    parsed = parse_csv(csv_of(DANA), updated=True)

    assert isinstance(parsed.profiles[0], ParticipantUpdated)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (DANA.replace(",24,", ",31,"), "field grade: input should be less than or equal to 30"),
        (DANA.replace(",24,", ",senior,"), "field grade: 'senior' is not a whole number"),
        (DANA.replace("Europe/London", "Europe/Londres"), "'Europe/Londres' is not an IANA"),
        (DANA.replace("mon 09:00-12:00", "monday 9am-noon"), "field availability: 'monday 9am"),
        (DANA.replace("thu 14:00-24:00", "thu 15:00-14:00"), "start 15:00 must be before end"),
        (DANA.replace("dana.whitfield@example.com", ""), "field email: required but missing"),
        (DANA.replace("mentee", "boss"), "field role: input should be 'mentor' or 'mentee'"),
        (DANA.replace(",true,false", ",true,maybe"), "field notify_reminders: 'maybe' is not"),
    ],
)
def test_an_invalid_row_is_reported_with_its_line_and_reason(row: str, expected: str) -> None:
    parsed = parse_csv(csv_of(SAM, row))

    assert [row.profile.participant_id for row in parsed.valid] == ["E20001"]
    [error] = parsed.errors
    assert error.line == 3
    assert error.participant_id == "E12345"
    assert expected in error.reason
    assert str(error).startswith("line 3 (E12345): ")


def test_line_numbers_count_blank_lines_and_quoted_line_breaks() -> None:
    quoted = SAM.replace("Sam Okafor", '"Sam\nOkafor"').replace(",6,", ",x,")
    text = "\n".join(
        [HEADER, "", DANA, quoted, DANA.replace("E12345", "E3").replace(",24,", ",0,")]
    )

    parsed = parse_csv(text)

    assert [(e.line, e.participant_id) for e in parsed.errors] == [(4, "E20001"), (6, "E3")]


def test_a_participant_twice_in_one_file_is_an_error() -> None:
    parsed = parse_csv(csv_of(DANA, SAM, DANA))

    assert parsed.errors == [
        RowError(4, "participant_id E12345 is already on line 2", "E12345"),
    ]


def test_a_header_without_required_columns_is_one_error() -> None:
    parsed = parse_csv("participant_id,role\nE1,mentor\n")

    assert parsed.valid == []
    [error] = parsed.errors
    assert error.line == 1
    assert "header has no column availability, department, display_name, email" in error.reason


def test_a_row_with_the_wrong_number_of_cells_is_an_error() -> None:
    parsed = parse_csv(csv_of(SAM + ",extra"))

    assert parsed.errors[0].reason == "row has 19 cells; the header has 18"


def test_an_empty_file_says_so() -> None:
    assert parse_csv("").errors[0].reason.startswith("file is empty")


def test_availability_cells() -> None:
    assert parse_availability("mon 9:00-12:00 | Fri 14:00 - 24:00") == [
        {"day": "mon", "start": "09:00", "end": "12:00"},
        {"day": "fri", "start": "14:00", "end": "24:00"},
    ]
    with pytest.raises(ValueError, match="is not a window 'day HH:MM-HH:MM'"):
        parse_availability("mornings")


def test_jsonl_lines_are_profiles() -> None:
    dana = parse_csv(csv_of(DANA)).profiles[0].model_dump(mode="json")
    lines = [
        orjson.dumps(dana).decode(),
        "",
        "{not json",
        orjson.dumps({**dana, "participant_id": "E2", "grade": 0}).decode(),
        "[1, 2]",
        orjson.dumps({**dana, "participant_id": "E3", "email": None}).decode(),
    ]

    parsed = parse_jsonl("\n".join(lines))

    assert [row.line for row in parsed.valid] == [1]
    assert parsed.profiles[0].model_dump(mode="json") == dana
    assert [(e.line, e.participant_id) for e in parsed.errors] == [
        (3, None),
        (4, "E2"),
        (5, None),
        (6, "E3"),
    ]
    assert parsed.errors[0].reason.startswith("not JSON")
    assert "field grade: input should be greater than or equal to 1" in parsed.errors[1].reason
    assert parsed.errors[2].reason == "expected a JSON object with the profile fields, got an array"
    assert "field email: input should be a valid string" in parsed.errors[3].reason


def test_written_files_read_back_unchanged() -> None:
    cohort = generate_cohort(40, seed=7)

    for parsed in (parse_csv(to_csv(cohort)), parse_jsonl(to_jsonl(cohort))):
        assert parsed.errors == []
        assert [p.model_dump(mode="json") for p in parsed.profiles] == cohort


def test_format_of_a_file_name() -> None:
    assert format_of("HR-Export.CSV") == "csv"
    assert format_of("people.jsonl") == "jsonl"
    assert format_of("people.ndjson") == "jsonl"
    assert format_of("people.xlsx") is None


def test_a_row_reports_every_problem_at_once() -> None:
    row = (
        DANA.replace(",24,", ",senior,")  # unreadable cell
        .replace("mon 09:00-12:00", "monday 9am-noon")  # unreadable cell
        .replace(",true,false", ",true,maybe")  # unreadable cell
        .replace("Europe/London", "Europe/Londres")  # the model's complaint
        .replace("dana.whitfield@example.com", "")  # the model's complaint
    )

    [error] = parse_csv(csv_of(row)).errors

    reason = error.reason
    expected = [
        "field grade: 'senior' is not a whole number",
        "field availability: 'monday 9am-noon' is not a window",
        "field notify_reminders: 'maybe' is not true or false",
        "'Europe/Londres' is not an IANA",
        "field email: required but missing",
    ]
    positions = [reason.find(text) for text in expected]
    assert -1 not in positions, reason
    assert max(positions[:3]) < min(positions[3:])  # the unreadable cells first
    # A cell already reported is not reported again as "missing".
    assert reason.count("field grade") == reason.count("field availability") == 1
    assert reason.count("field notify") == 1


def test_a_jsonl_line_reports_every_problem_at_once() -> None:
    document = orjson.loads(to_jsonl(generate_cohort(1, seed=1))).copy()
    document.update(grade=99, role="boss", timezone="Mars/Olympus")

    [error] = parse_jsonl(orjson.dumps(document).decode()).errors

    assert "field grade:" in error.reason
    assert "field role:" in error.reason
    assert "field timezone:" in error.reason
