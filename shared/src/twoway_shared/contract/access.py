"""Who may do what on Kafka: the one list of ACLs, derived from the contract's topic ownership."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from twoway_shared.contract.topics import Topic, topic_name

SERVICES: tuple[str, ...] = ("matching", "scheduling", "notifications", "progress")
"""Twoway's services; each is one Kafka principal (`User:<prefix-free service name>`)."""

SERVICE_TOPICS: dict[str, tuple[tuple[Topic, ...], tuple[Topic, ...]]] = {
    "matching": (
        (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIR_RESPONSES, Topic.PROGRESS),
        (Topic.PAIRS,),
    ),
    "scheduling": (
        (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSION_REQUESTS),
        (Topic.SESSIONS,),
    ),
    "notifications": (
        (Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSIONS, Topic.PROGRESS),
        (Topic.NOTIFICATIONS,),
    ),
    "progress": (
        (
            Topic.PROGRAMMES,
            Topic.ENROLMENTS,
            Topic.PAIRS,
            Topic.SESSIONS,
            Topic.FEEDBACK,
            Topic.NOTIFICATIONS,
        ),
        (Topic.PROGRESS,),
    ),
}
"""service -> (topics it consumes, topics it produces besides the dead-letter topic)."""

Operation = Literal["Read", "Write", "Describe", "Create"]
ResourceType = Literal["topic", "group"]


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule: `principal` may `operation` on the literal resource `name`."""

    principal: str
    resource_type: ResourceType
    name: str
    operation: Operation


def consumes(service: str) -> tuple[Topic, ...]:
    """The contract topics a service consumes."""
    return SERVICE_TOPICS[service][0]


def produces(service: str) -> tuple[Topic, ...]:
    """The contract topics a service produces to, the dead-letter topic included."""
    return (*SERVICE_TOPICS[service][1], Topic.DEADLETTER)


def principal(service: str) -> str:
    """The Kafka principal of a service, e.g. `User:scheduling`."""
    return f"User:{service}"


def service_acls(service: str, prefix: str) -> list[Acl]:
    """Everything one service may do, and nothing more.

    It reads (and describes) its input topics, writes its output topics and the dead-letter
    topic, creates any of those that are missing, and reads its own consumer group.
    """
    who = principal(service)
    rules: set[Acl] = set()
    for topic in consumes(service):
        name = topic_name(prefix, topic)
        rules |= {Acl(who, "topic", name, op) for op in ("Read", "Describe", "Create")}
    for topic in produces(service):
        name = topic_name(prefix, topic)
        rules |= {Acl(who, "topic", name, op) for op in ("Write", "Describe", "Create")}
    rules.add(Acl(who, "group", f"{prefix}{service}", "Read"))
    return sorted(rules)


def all_acls(prefix: str) -> list[Acl]:
    """The ACLs of every service under one topic prefix."""
    return [acl for service in SERVICES for acl in service_acls(service, prefix)]


def as_json(acls: list[Acl]) -> list[dict[str, str]]:
    """The ACLs as plain records (principal, resource_type, pattern, name, operation)."""
    return [
        {
            "principal": acl.principal,
            "resource_type": acl.resource_type,
            "pattern": "literal",
            "name": acl.name,
            "operation": acl.operation,
            "permission": "allow",
        }
        for acl in acls
    ]


def as_kafka_acls_commands(acls: list[Acl]) -> list[str]:
    """One `kafka-acls.sh --add` line per principal and resource, operations combined.

    The lines expect `$BOOTSTRAP` and an admin client file `admin.properties` (SASL settings
    of a super-user), as Kafka's own tool does.
    """
    grouped: dict[tuple[str, ResourceType, str], list[str]] = {}
    for acl in sorted(acls):
        grouped.setdefault((acl.principal, acl.resource_type, acl.name), []).append(acl.operation)
    lines = []
    for (who, kind, name), operations in grouped.items():
        ops = " ".join(f"--operation {op}" for op in operations)
        lines.append(
            'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config admin.properties '
            f"--add --allow-principal {who} {ops} --{kind} {name} --resource-pattern-type literal"
        )
    return lines
