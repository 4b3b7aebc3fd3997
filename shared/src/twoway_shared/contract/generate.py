"""Writes the contract's JSON Schemas and AsyncAPI document; `--check` says if they are stale."""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twoway_shared.contract.envelope import CONTENT_TYPE, MAX_RECORD_BYTES, CloudEvent, full_type
from twoway_shared.contract.events import EVENT_MODELS
from twoway_shared.contract.examples import example_event
from twoway_shared.contract.topics import (
    DEFAULT_TOPIC_PREFIX,
    EVENT_TOPIC,
    TOPIC_EVENT_TYPES,
    TOPIC_KEY_FIELD,
    Topic,
    topic_name,
)

CONTRACT_VERSION = "1.1.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"
DEFAULT_OUT = Path("docs/contract")

# Who sends to and receives from each topic (CONTRACT.md section 2); Twoway's services first.
OPERATIONS: tuple[tuple[str, str, tuple[Topic, ...]], ...] = (
    ("matching", "receive", (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIR_RESPONSES,
                             Topic.PROGRESS)),
    ("matching", "send", (Topic.PAIRS, Topic.DEADLETTER)),
    ("scheduling", "receive", (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS,
                               Topic.SESSION_REQUESTS)),
    ("scheduling", "send", (Topic.SESSIONS, Topic.DEADLETTER)),
    ("notifications", "receive", (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS,
                                  Topic.SESSIONS, Topic.PROGRESS)),
    ("notifications", "send", (Topic.NOTIFICATIONS, Topic.DEADLETTER)),
    ("progress", "receive", (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSIONS,
                             Topic.FEEDBACK, Topic.NOTIFICATIONS)),
    ("progress", "send", (Topic.PROGRESS, Topic.DEADLETTER)),
    ("admin-portal", "send", (Topic.PROGRAMMES,)),
    ("hr-portals", "send", (Topic.ENROLMENTS,)),
    ("portals", "send", (Topic.PAIR_RESPONSES, Topic.SESSION_REQUESTS, Topic.FEEDBACK)),
    ("calendar-bridges", "send", (Topic.SESSION_REQUESTS,)),
    ("integrators", "receive", (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS,
                                Topic.PROGRESS)),
    ("operations", "receive", (Topic.DEADLETTER,)),
)  # fmt: skip
TWOWAY_SERVICES = frozenset({"matching", "scheduling", "notifications", "progress"})


def schema_id(event_type: str) -> str:
    """The `$id` of the JSON Schema of an event type."""
    return f"urn:twoway:contract:{CONTRACT_VERSION}:schema:{full_type(event_type)}"


def _summary(model: type[Any]) -> str:
    return inspect.cleandoc(model.__doc__ or "").splitlines()[0]


def event_schema(event_type: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a whole CloudEvent carrying this event type's `data`."""
    model = EVENT_MODELS[event_type]
    topic = EVENT_TOPIC[event_type]
    envelope = CloudEvent.model_json_schema()
    data = model.model_json_schema()
    definitions = data.pop("$defs", {})
    properties = dict(envelope["properties"])
    properties["type"] = {"const": full_type(event_type), "type": "string"}
    properties["data"] = data
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(event_type),
        "title": full_type(event_type),
        "description": (
            f"{_summary(model)} A CloudEvents 1.0 event in structured JSON mode on topic "
            f"{{prefix}}{topic.value}, keyed by data.{TOPIC_KEY_FIELD[topic]}. Unknown fields "
            "and extension attributes are ignored."
        ),
        "x-twoway-contract-version": CONTRACT_VERSION,
        "x-twoway-topic": topic.value,
        "x-twoway-key": TOPIC_KEY_FIELD[topic],
        "type": "object",
        "properties": properties,
        "required": envelope["required"],
        "examples": [example_event(event_type)],
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


def _to_components(node: Any) -> Any:
    """A schema whose `#/$defs/X` references point into `#/components/schemas/X`."""
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", "#/components/schemas/")
                if key == "$ref" and isinstance(value, str)
                else _to_components(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_to_components(item) for item in node]
    return node


def _channel_id(topic: Topic) -> str:
    return topic.value.removesuffix(".v1")


def _event_message(event_type: str) -> dict[str, Any]:
    topic = EVENT_TOPIC[event_type]
    return {
        "name": event_type,
        "title": full_type(event_type),
        "summary": _summary(EVENT_MODELS[event_type]),
        "contentType": CONTENT_TYPE,
        "headers": {"$ref": "#/components/schemas/RecordHeaders"},
        "payload": {"$ref": f"#/components/schemas/{full_type(event_type)}"},
        "correlationId": {"$ref": "#/components/correlationIds/correlationid"},
        "examples": [
            {
                "name": event_type,
                "headers": {"content-type": CONTENT_TYPE},
                "payload": example_event(event_type),
            }
        ],
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"UTF-8 bytes of data.{TOPIC_KEY_FIELD[topic]}",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


DEAD_LETTER_MESSAGE: dict[str, Any] = {
    "name": "deadletter",
    "title": "Dead letter",
    "summary": "A record a service could not accept, copied unchanged (key, value, headers).",
    "description": (
        "The value, key and original headers are exactly those of the rejected record; the "
        "x-twoway-* and x-original-* headers are added. It may hold personal data, so access to "
        "this topic is for operators only."
    ),
    "headers": {
        "type": "object",
        "properties": {
            "x-twoway-error": {
                "type": "string",
                "description": "Why the record was rejected, as a sentence a person can act on.",
            },
            "x-twoway-consumer": {
                "type": "string",
                "enum": ["matching", "scheduling", "notifications"],
            },
            "x-original-topic": {"type": "string"},
            "x-original-partition": {"type": "string", "pattern": "^[0-9]+$"},
            "x-original-offset": {"type": "string", "pattern": "^[0-9]+$"},
        },
        "required": [
            "x-twoway-error",
            "x-twoway-consumer",
            "x-original-topic",
            "x-original-partition",
            "x-original-offset",
        ],
    },
    "payload": {"description": "The original record value, unchanged; it may not be JSON."},
    "bindings": {
        "kafka": {
            "key": {"type": "string", "description": "The original record key, unchanged."},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    },
}


def _channel(topic: Topic) -> dict[str, Any]:
    address = topic_name(DEFAULT_TOPIC_PREFIX, topic)
    event_types = sorted(TOPIC_EVENT_TYPES[topic])
    messages = {t: {"$ref": f"#/components/messages/{t}"} for t in event_types}
    if topic is Topic.DEADLETTER:
        messages = {"deadletter": {"$ref": "#/components/messages/deadletter"}}
        what = "Records a service could not accept, unchanged, with the reason in headers."
    else:
        what = f"Keyed by data.{TOPIC_KEY_FIELD[topic]}."
    return {
        "address": address,
        "title": address,
        "description": (
            f"{what} The address uses the default topic prefix {DEFAULT_TOPIC_PREFIX!r}; the "
            f"prefix is configurable (TWOWAY_TOPIC_PREFIX), the rest ({topic.value}) is fixed."
        ),
        "messages": messages,
        "bindings": {
            "kafka": {"topic": address, "partitions": 6, "bindingVersion": KAFKA_BINDING_VERSION}
        },
    }


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for actor, action, topics in OPERATIONS:
        for topic in topics:
            channel = _channel_id(topic)
            names = (
                ["deadletter"] if topic is Topic.DEADLETTER else sorted(TOPIC_EVENT_TYPES[topic])
            )
            operations[f"{actor}.{action}.{channel}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"{actor} {action}s {channel} records",
                "tags": [{"name": actor if actor in TWOWAY_SERVICES else "external"}],
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
            }
    return operations


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the whole contract."""
    schemas: dict[str, Any] = {
        "RecordHeaders": {
            "type": "object",
            "properties": {
                "content-type": {
                    "type": "string",
                    "const": CONTENT_TYPE,
                    "description": "Set on every record Twoway produces; consumers accept "
                    "records without it.",
                }
            },
        }
    }
    for event_type in sorted(EVENT_MODELS):
        schema = event_schema(event_type)
        for name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(name, definition) != definition:
                raise RuntimeError(f"two different schemas are named {name}")
        for key in ("$schema", "$id", "examples"):
            schema.pop(key)
        schemas[full_type(event_type)] = schema
    messages: dict[str, Any] = {t: _event_message(t) for t in sorted(EVENT_MODELS)}
    messages["deadletter"] = DEAD_LETTER_MESSAGE
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Twoway event contract",
            "version": CONTRACT_VERSION,
            "description": (
                "Every record value is a CloudEvents 1.0 event in structured JSON mode, at most "
                f"{MAX_RECORD_BYTES} bytes; the full type is twoway.<event type>.v1. Topic "
                f"names are shown with the default prefix {DEFAULT_TOPIC_PREFIX!r}, which is "
                "configurable with TWOWAY_TOPIC_PREFIX. Generated by "
                "`python -m twoway_shared.contract.generate`; see docs/contract/README.md."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "default": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "The default of TWOWAY_KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": {_channel_id(topic): _channel(topic) for topic in Topic},
        "operations": _operations(),
        "components": {
            "schemas": _to_components(schemas),
            "messages": messages,
            "correlationIds": {
                "correlationid": {
                    "description": "Copied from the cause to every effect, or started anew.",
                    "location": "$message.payload#/correlationid",
                }
            },
        },
    }
    return document


def _render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated_files() -> dict[str, str]:
    """Relative path -> content of every generated contract file."""
    files = {f"schemas/{full_type(t)}.json": _render(event_schema(t)) for t in sorted(EVENT_MODELS)}
    files["asyncapi.json"] = _render(asyncapi())
    return files


def _existing(out: Path) -> set[str]:
    schemas = out / "schemas"
    found = {f"schemas/{p.name}" for p in schemas.glob("*.json")} if schemas.is_dir() else set()
    if (out / "asyncapi.json").exists():
        found.add("asyncapi.json")
    return found


def differences(out: Path) -> list[str]:
    """What is out of date in `out` compared with freshly generated files (empty if nothing)."""
    expected = generated_files()
    problems: list[str] = []
    for path, content in expected.items():
        target = out / path
        if not target.exists():
            problems.append(f"{path}: missing")
            continue
        current = target.read_text(encoding="utf-8")
        if current != content:
            changed = sum(
                1
                for line in difflib.unified_diff(current.splitlines(), content.splitlines(), n=0)
                if line[:1] in "+-" and line[:3] not in ("+++", "---")
            )
            problems.append(f"{path}: differs ({changed} lines)")
    problems += [f"{path}: not generated any more" for path in _existing(out) - expected.keys()]
    return sorted(problems)


def write(out: Path) -> None:
    """Write every generated file under `out` and remove stale schemas."""
    expected = generated_files()
    (out / "schemas").mkdir(parents=True, exist_ok=True)
    for stale in _existing(out) - expected.keys():
        (out / stale).unlink()
    for path, content in expected.items():
        (out / path).write_text(content, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the contract files, or check them with `--check`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default: docs/contract)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files in --out are out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(args.out)
        if problems:
            print(f"{args.out} is out of date; run `make contract`:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    write(args.out)
    print(f"wrote {len(generated_files())} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
