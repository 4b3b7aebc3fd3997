"""The hardened input edge: hostile values are refused alike by the models and the JSON Schemas,
and on the real broker a bad record is dead-lettered while the good ones around it go on."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from twoway_dev.testing.kafka import ToSend
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_matching.app import create_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_shared.contract import InvalidRecord, Topic, full_type, parse_record
from twoway_shared.contract.examples import example_event

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "contract" / "schemas"


@dataclass(frozen=True)
class Case:
    """A value put at `path` in the example `data` of `event_type`; `valid` is the decision."""

    name: str
    event_type: str
    path: tuple[str | int, ...]
    value: Any
    valid: bool


def case(name: str, event_type: str, path: str, value: Any, valid: bool) -> Case:
    steps = tuple(int(p) if p.isdigit() else p for p in path.split("."))
    return Case(name, event_type, steps, value, valid)


E, W, C, R, P = (
    "participant.enrolled",
    "participant.withdrawn",
    "programme.configured",
    "session.reschedule_requested",
    "session.attendance_recorded",
)
CORPUS = [
    # Ids, languages, locales and HH:MM: full matches only.
    case("id", E, "participant_id", "E12345", True),
    case("id + LF", E, "participant_id", "E12345\n", False),
    case("id + CR", E, "participant_id", "E12345\r", False),
    case("LF + id", E, "participant_id", "\nE12345", False),
    case("id + NUL", E, "participant_id", "E12345\x00", False),
    case("fullwidth id", E, "participant_id", "\uff2512345", False),
    case("manager id + LF", E, "manager_id", "E00042\n", False),
    case("language", E, "languages.0", "pt-BR", True),
    case("language + LF", E, "languages.0", "en-GB\n", False),
    case("locale + LF", E, "locale", "en\n", False),
    case("start HH:MM", E, "availability.0.start", "09:15", True),
    case("start + LF", E, "availability.0.start", "09:00\n", False),
    case("end 24:00 + LF", E, "availability.1.end", "24:00\n", False),
    case("Arabic-Indic digits", E, "availability.0.start", "\u0660\u0669:00", False),
    # Names, departments, tags: no control characters at all.
    case("name", E, "display_name", "Zo\u00eb O'Brien-Smith", True),
    case("name + NUL", E, "display_name", "Dana\x00Whitfield", False),
    case("name + LF", E, "display_name", "Dana\nBcc: all@example.com", False),
    case("name + ESC", E, "display_name", "Dana \x1b[31mred", False),
    case("name + DEL", E, "display_name", "Dana\x7f", False),
    case("name + NEL (C1)", E, "display_name", "Dana\x85", False),
    case("department + NUL", E, "department", "Fin\x00ance", False),
    case("department + TAB", E, "department", "Fin\tance", False),
    case("location + LF", E, "location", "London\n", False),
    case("tag + NUL", E, "offers.0", "leader\x00ship", False),
    case("tag + TAB", E, "offers.0", "machine\tlearning", False),
    case("tag + LF", E, "wants.0", "ai\n", False),
    case("programme name + NUL", C, "name", "RM\x00", False),
    # Free text a person wrote keeps tabs and line breaks, nothing else.
    case("reason with lines", W, "reason", "Moving on.\r\nThanks\tall", True),
    case("reason + NUL", W, "reason", "bye\x00", False),
    case("reason + ESC", W, "reason", "\x1b[2J", False),
    case("comment + BEL", P, "comment", "great\x07", False),
    case("comment with lines", P, "comment", "Good session.\nMore next time.", True),
    # Numbers and dates bounded by what the services store and compute.
    case("revision int32 max", E, "revision", 2**31 - 1, True),
    case("revision over int32", E, "revision", 2**31, False),
    case("revision negative", E, "revision", -1, False),
    case("starts_on 2099", C, "starts_on", "2099-12-31", True),
    case("starts_on 9999", C, "starts_on", "9999-12-31", False),
    case("starts_on 1999", C, "starts_on", "1999-12-31", False),
    case("starts_on + LF", C, "starts_on", "2027-01-04\n", False),
    case("not_before 9999", R, "not_before", "9999-12-31T23:59:59Z", False),
    case("not_before + LF", R, "not_before", "2027-03-01T09:00:00Z\n", False),
    case("not_before", R, "not_before", "2027-03-01T09:00:00+01:00", True),
    # Emails: the local part must be sendable without SMTPUTF8; an IDN domain is punycoded.
    case("email IDN domain", E, "email", "dana@b\u00fccher.example", True),
    case("email Unicode local part", E, "email", "jos\u00e9@example.com", False),
    case("email + LF", E, "email", "dana@example.com\n", False),
    case("email + NUL", E, "email", "dana\x00@example.com", False),
]


def put(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def hostile_event(c: Case, **data: Any) -> dict[str, Any]:
    event = example_event(c.event_type)
    event["id"] = str(uuid.uuid4())
    event["data"].update(data)
    put(event["data"], c.path, c.value)
    return event


def model_accepts(c: Case) -> bool:
    from twoway_shared.contract import EVENT_TOPIC

    event = hostile_event(c)
    try:
        parse_record(EVENT_TOPIC[c.event_type], orjson.dumps(event))
    except InvalidRecord:
        return False
    return True


def schema_accepts(c: Case) -> bool:
    schema = json.loads((SCHEMAS / f"{full_type(c.event_type)}.json").read_text())
    return bool(Draft202012Validator(schema).is_valid(hostile_event(c)))


@pytest.mark.parametrize("c", CORPUS, ids=[c.name for c in CORPUS])
def test_models_and_published_schemas_agree_on_hostile_values(c: Case) -> None:
    assert (model_accepts(c), schema_accepts(c)) == (c.valid, c.valid)


def test_an_idn_email_is_kept_in_its_sendable_ascii_form() -> None:
    event = hostile_event(case("idn", E, "email", "Dana@B\u00fcCHER.example", True))
    parsed = parse_record(Topic.ENROLMENTS, orjson.dumps(event))
    assert parsed.data.email == "Dana@xn--bcher-kva.example"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- on the real broker


@pytest.fixture
async def matching(sandbox: Sandbox) -> AsyncIterator[ServiceHarness]:
    async with sandbox.service(create_spec(), MatchingServiceSettings) as running:
        yield running


ENROLMENT_CASES = [c for c in CORPUS if c.event_type == E and not c.valid]
PROGRAMME_CASES = [c for c in CORPUS if c.event_type == C and not c.valid]


def good(event_type: str, **data: Any) -> bytes:
    event = example_event(event_type)
    event["data"].update(data)
    event["id"] = str(uuid.uuid4())  # consumers dedupe on (source, id)
    return orjson.dumps(event)


@pytest.mark.infra
async def test_each_hostile_record_is_dead_lettered_and_its_neighbours_are_processed(
    matching: ServiceHarness,
) -> None:
    """Per case, on one key (so one partition, in order): a good record, the hostile one
    and a good one after it; every hostile one is dead-lettered, every good one applied."""
    enrolments, programmes = matching.topic(Topic.ENROLMENTS), matching.topic(Topic.PROGRAMMES)
    records: list[ToSend] = []
    for k, c in enumerate(ENROLMENT_CASES):
        pid, edge = f"EDGE{k}", "RM-EDGE"
        hostile = hostile_event(c, participant_id=pid, revision=1, programme_id=edge)
        records += [
            ToSend(
                enrolments, good(E, participant_id=pid, revision=0, programme_id=edge), pid.encode()
            ),
            ToSend(enrolments, orjson.dumps(hostile), pid.encode()),
            ToSend(
                enrolments, good(E, participant_id=pid, revision=2, programme_id=edge), pid.encode()
            ),
        ]
    for k, c in enumerate(PROGRAMME_CASES):
        programme = f"RM-EDGE{k}"
        key = programme.encode()
        records += [
            ToSend(programmes, good(C, programme_id=programme, name="before"), key),
            ToSend(programmes, orjson.dumps(hostile_event(c, programme_id=programme)), key),
            ToSend(programmes, good(C, programme_id=programme, name="after"), key),
        ]
    bad = len(ENROLMENT_CASES) + len(PROGRAMME_CASES)
    await matching.send(*records)
    await matching.wait_dead_letters(bad, timeout=60)
    await matching.barrier()
    letters = matching.dead_letters()
    assert len(letters) == bad
    assert {r.key for r in letters} == {
        *(f"EDGE{k}".encode() for k in range(len(ENROLMENT_CASES))),
        *(f"RM-EDGE{k}".encode() for k in range(len(PROGRAMME_CASES))),
    }
    assert all(r.headers["x-twoway-error"] for r in letters)
    people = await matching.rows(
        "SELECT participant_id, revision FROM matching.participants WHERE programme_id = $1",
        "RM-EDGE",
    )
    settings = await matching.rows(
        "SELECT programme_id, settings->>'name' AS name FROM matching.programmes"
        " WHERE programme_id LIKE 'RM-EDGE%'"
    )
    # The good record after each bad one was applied.
    assert {r["participant_id"]: r["revision"] for r in people} == {
        f"EDGE{k}": 2 for k in range(len(ENROLMENT_CASES))
    }
    assert {r["programme_id"]: r["name"] for r in settings} == {
        f"RM-EDGE{k}": "after" for k in range(len(PROGRAMME_CASES))
    }
