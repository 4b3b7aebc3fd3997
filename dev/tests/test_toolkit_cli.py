"""The `twoway` command without a broker: usage errors, invalid input, the events it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from twoway_dev.toolkit import cli
from twoway_dev.toolkit.generate import generate_cohort
from twoway_dev.toolkit.inputs import to_csv
from twoway_dev.toolkit.publish import Outgoing, outgoing
from twoway_shared.contract import CONTENT_TYPE, Topic, parse_record
from twoway_shared.platform.settings import Settings


def export_with(tmp_path: Path, **broken: Any) -> tuple[Path, list[str]]:
    """A two-row HR export CSV whose second row has the `broken` values; and its ids."""
    first, second = generate_cohort(2, seed=11)
    export = tmp_path / "hr.csv"
    export.write_text(to_csv([first, {**second, **broken}]))
    return export, [first["participant_id"], second["participant_id"]]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Outgoing]:
    """Records the CLI would have published; Kafka is never touched."""
    sent: list[Outgoing] = []

    async def fake_publish(settings: Settings, records: list[Outgoing], **_: Any) -> None:
        sent.extend(records)

    monkeypatch.setattr(cli, "publish", fake_publish)
    return sent


def dry_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert cli.main([*argv, "--dry-run"]) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["launch"],
        ["accept", "P1"],
        ["attend", "S1", "P1", "E1"],
        ["attend", "S1", "P1", "E1", "--attended", "--rating", "five"],
        ["programme", "configure", "RM", "--cadence", "daily"],
        ["tail", "--max", "0"],
        ["enrol", "people.xlsx"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "usage: twoway" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "3  Kafka unreachable" in help_text
    assert "1  invalid input" in help_text
    assert "3 Kafka unreachable" in (cli.__doc__ or "")


def test_enrol_with_an_invalid_row_publishes_nothing_and_exits_1(
    tmp_path: Path, published: list[Outgoing], capsys: pytest.CaptureFixture[str]
) -> None:
    export, (_, broken_id) = export_with(tmp_path, timezone="Mars/Olympus")

    assert cli.main(["enrol", str(export)]) == 1

    assert published == []
    err = capsys.readouterr().err
    assert broken_id in err
    assert "'Mars/Olympus' is not an IANA time zone name" in err
    assert "nothing published: 1 invalid row(s)" in err


def test_enrol_skip_invalid_publishes_the_valid_rows(
    tmp_path: Path, published: list[Outgoing], capsys: pytest.CaptureFixture[str]
) -> None:
    export, (valid_id, _) = export_with(tmp_path, grade=99)

    assert cli.main(["enrol", str(export), "--skip-invalid", "--source", "/portal/hr"]) == 0

    [record] = published
    assert (record.topic, record.key) == (Topic.ENROLMENTS, valid_id.encode())
    assert record.event.source == "/portal/hr"
    assert record.event.type == "twoway.participant.enrolled.v1"
    assert "published 1 participant.enrolled event(s), invalid 1" in capsys.readouterr().out


def test_enrol_of_a_missing_file_exits_1(
    tmp_path: Path, published: list[Outgoing], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["enrol", str(tmp_path / "absent.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_generated_files_enrol_as_participant_updated(
    tmp_path: Path, published: list[Outgoing]
) -> None:
    target = tmp_path / "cohort.csv"
    assert cli.main(["generate", "--n", "25", "--seed", "3", "-o", str(target)]) == 0

    assert cli.main(["enrol", str(target), "--updated"]) == 0

    assert len(published) == 25
    assert {r.event.type for r in published} == {"twoway.participant.updated.v1"}
    assert [r.key.decode() for r in published] == [
        r.event.data["participant_id"] for r in published
    ]


def test_generate_writes_jsonl_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["generate", "--n", "3", "--programme", "RM-9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["programme_id"] for line in lines] == ["RM-9"] * 3


def test_portal_commands_build_contract_events(capsys: pytest.CaptureFixture[str]) -> None:
    attendance = "session.attendance_recorded"
    reschedule = ["reschedule", "S1", "P1", "E1", "--not-before", "2027-03-01T09:00:00Z"]
    cases: list[tuple[list[str], Topic, str, str]] = [
        (["accept", "P1", "E1"], Topic.PAIR_RESPONSES, "P1", "pair.response_submitted"),
        (["decline", "P1", "E1"], Topic.PAIR_RESPONSES, "P1", "pair.response_submitted"),
        (reschedule, Topic.SESSION_REQUESTS, "P1", "session.reschedule_requested"),
        (["attend", "S1", "P1", "E1", "--absent"], Topic.SESSION_REQUESTS, "P1", attendance),
        (["withdraw", "E1", "RM", "--erase"], Topic.ENROLMENTS, "E1", "participant.withdrawn"),
        (["programme", "match", "RM"], Topic.PROGRAMMES, "RM", "programme.matching_requested"),
    ]
    for argv, topic, key, event_type in cases:
        [event] = dry_run(argv, capsys)
        parsed = parse_record(topic, orjson.dumps(event), key.encode())
        assert parsed.type == event_type
        assert event["source"] == "/twoway/cli"
        assert event["subject"] == key

    [decline] = dry_run(["decline", "P1", "E1", "--reason", "busy"], capsys)
    assert decline["data"] == {
        "pair_id": "P1",
        "participant_id": "E1",
        "response": "decline",
        "reason": "busy",
    }
    [absent] = dry_run(["attend", "S1", "P1", "E1", "--absent", "--rating", "2"], capsys)
    assert (absent["data"]["attended"], absent["data"]["rating"]) == (False, 2)


def test_programme_configure_sends_only_what_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "programme", "configure", "RM-2027", "--name", "Reverse mentoring 2027",
        "--session-minutes", "45", "--starts-on", "2027-01-11", "--reminder-minutes", "1440",
        "--reminder-minutes", "60", "--mode", "batch", "--acceptance-required",
        "--no-cross-department", "--proposal-ttl-hours", "48", "--min-score", "0.25",
        "--inactive-warning-days", "14", "--credit-minutes", "60",
        "--coordinator-email", "office@example.com",
    ]  # fmt: skip
    [event] = dry_run(argv, capsys)

    assert event["type"] == "twoway.programme.configured.v1"
    assert event["data"] == {
        "programme_id": "RM-2027",
        "name": "Reverse mentoring 2027",
        "session_minutes": 45,
        "cadence": "weekly",
        "sessions": 12,
        "starts_on": "2027-01-11",
        "min_notice_hours": 24,
        "reminder_minutes": [1440, 60],
        "matching": {
            "mode": "batch",
            "acceptance_required": True,
            "min_grade_gap": 1,
            "cross_department": False,
            "proposal_ttl_hours": 48,
            "min_score": 0.25,
        },
        "progress": {
            "fit_check": True,
            "inactive_warning_days": 14,
            "inactive_close_days": 42,
            "credit_minutes": 60,
        },
        "coordinator_email": "office@example.com",
    }
    [quiet] = dry_run(["programme", "configure", "RM", "--no-reminders"], capsys)
    assert quiet["data"]["reminder_minutes"] == []


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["attend", "S1", "P1", "E1", "--attended", "--rating", "7"], "field rating"),
        (["programme", "configure", "RM", "--session-minutes", "20"], "multiple of 15"),
        (["programme", "configure", "RM", "--starts-on", "11/01/2027"], "is not a date"),
        (["reschedule", "S1", "P1", "E1", "--not-before", "tomorrow"], "not an RFC 3339"),
        (["withdraw", "E 1", "RM"], "field participant_id"),
    ],
)
def test_invalid_event_data_exits_1_with_the_reason(
    argv: list[str], reason: str, published: list[Outgoing], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    assert published == []
    assert reason in capsys.readouterr().err


def test_an_unreachable_broker_exits_3_with_advice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWOWAY_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")

    assert cli.main(["programme", "match", "RM"]) == 3

    err = " ".join(capsys.readouterr().err.split())
    assert "cannot reach Kafka at 127.0.0.1:1: is it running? (twoway-stack up)" in err


def test_bad_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWOWAY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")

    assert cli.main(["dlq"]) == 2
    assert "TWOWAY_KAFKA_SASL_USERNAME" in capsys.readouterr().err


def test_an_outgoing_record_carries_the_contract_header_and_key() -> None:
    from twoway_shared.contract import ProgrammeMatchingRequested

    record = outgoing(ProgrammeMatchingRequested(programme_id="RM"), source="/portal/admin")

    assert record.headers == [("content-type", CONTENT_TYPE.encode())]
    assert record.key == b"RM"
    assert parse_record(Topic.PROGRAMMES, record.value, record.key).source == "/portal/admin"
