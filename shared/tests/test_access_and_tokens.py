"""The one ACL list and calendar feed tokens."""

from __future__ import annotations

from twoway_shared.contract import calendar_token
from twoway_shared.contract.access import SERVICES, all_acls, service_acls
from twoway_shared.contract.generate import OPERATIONS


def test_acls_follow_the_asyncapi_operations() -> None:
    for service in SERVICES:
        acls = service_acls(service, "twoway.")
        reads = {a.name for a in acls if a.resource_type == "topic" and a.operation == "Read"}
        writes = {a.name for a in acls if a.resource_type == "topic" and a.operation == "Write"}
        documented = {(who, how): topics for who, how, topics in OPERATIONS}
        assert reads == {f"twoway.{t.value}" for t in documented[(service, "receive")]}
        assert writes == {f"twoway.{t.value}" for t in documented[(service, "send")]}
        groups = {a.name for a in acls if a.resource_type == "group"}
        assert groups == {f"twoway.{service}"}


def test_no_service_may_write_another_services_output() -> None:
    acls = all_acls("p.")
    writers: dict[str, set[str]] = {a.name: set() for a in acls if a.operation == "Write"}
    for acl in acls:
        if acl.operation == "Write":
            writers[acl.name].add(acl.principal)
    assert writers.pop("p.deadletter.v1") == {f"User:{s}" for s in SERVICES}
    assert all(len(who) == 1 for who in writers.values()), writers


def test_token_round_trip_and_rotation() -> None:
    old, new = b"old-secret", b"new-secret"
    token = calendar_token.sign("E12345", [old])
    assert calendar_token.verify(token, [old]) == "E12345"
    assert calendar_token.verify(token, [new, old]) == "E12345"
    assert calendar_token.verify(token, [new]) is None
    assert len(token.split(".")[1]) >= 22  # at least 128 bits of MAC


def test_forged_and_malformed_tokens_are_refused() -> None:
    keys = [b"k"]
    token = calendar_token.sign("E12345", keys)
    head, mac = token.split(".")
    other = calendar_token.sign("E99999", keys).split(".")[0]
    for bad in (
        f"{other}.{mac}",
        f"{head}.{mac[:-2]}AA",
        head,
        "",
        ".",
        "%%%.%%%",
        "a" * 500,
        f"{head}x.{mac}",
    ):
        assert calendar_token.verify(bad, keys) is None, bad
    assert calendar_token.parse_keys(" a, ,b ") == [b"a", b"b"]
