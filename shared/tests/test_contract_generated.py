"""The committed docs/contract files equal what the generator writes today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twoway_shared.contract import EVENT_MODELS, TOPIC_EVENT_TYPES, Topic, full_type
from twoway_shared.contract.generate import differences, generated_files, main, write

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "contract"
STALE = "docs/contract is out of date; run `make contract` and commit the result"


def test_committed_contract_files_are_up_to_date(tmp_path: Path) -> None:
    write(tmp_path)
    fresh = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")}
    committed = {p.relative_to(COMMITTED).as_posix() for p in COMMITTED.rglob("*.json")}
    assert committed == fresh, f"{STALE}: files differ: {sorted(committed ^ fresh)}"
    for path in sorted(fresh):
        current = (COMMITTED / path).read_text(encoding="utf-8")
        assert current == (tmp_path / path).read_text(encoding="utf-8"), f"{STALE}: {path}"
    assert differences(COMMITTED) == [], STALE


def test_there_is_one_schema_per_event_type() -> None:
    files = generated_files()
    for event_type in EVENT_MODELS:
        schema = json.loads(files[f"schemas/{full_type(event_type)}.json"])
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(full_type(event_type))
        assert schema["x-twoway-contract-version"] == "1.1.0"
        assert schema["properties"]["type"]["const"] == full_type(event_type)
        assert "data" in schema["required"]
    assert len(files) == len(EVENT_MODELS) + 1


def test_asyncapi_document_covers_every_topic_and_message() -> None:
    document = json.loads(generated_files()["asyncapi.json"])
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == "1.1.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {f"twoway.{topic.value}" for topic in Topic}
    pairs = document["channels"]["pairs"]
    assert set(pairs["messages"]) == TOPIC_EVENT_TYPES[Topic.PAIRS]
    assert "configurable" in pairs["description"]
    assert set(document["components"]["messages"]) == set(EVENT_MODELS) | {"deadletter"}
    headers = document["components"]["messages"]["deadletter"]["headers"]["required"]
    assert "x-twoway-error" in headers
    assert "x-original-offset" in headers
    operations = document["operations"]
    assert operations["matching.send.pairs"]["action"] == "send"
    assert operations["scheduling.receive.pairs"]["action"] == "receive"
    assert operations["notifications.send.notifications"]["action"] == "send"
    for operation in operations.values():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"]


def test_check_mode_fails_on_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    target = tmp_path / "schemas" / "twoway.pair.confirmed.v1.json"
    target.write_text(target.read_text(encoding="utf-8").replace("pair_id", "pair"), "utf-8")
    (tmp_path / "schemas" / "twoway.pair.retired.v1.json").write_text("{}\n", "utf-8")
    capsys.readouterr()
    assert main(["--out", str(tmp_path), "--check"]) == 1
    report = capsys.readouterr().err
    assert "run `make contract`" in report
    assert "schemas/twoway.pair.confirmed.v1.json: differs" in report
    assert "schemas/twoway.pair.retired.v1.json: not generated any more" in report
