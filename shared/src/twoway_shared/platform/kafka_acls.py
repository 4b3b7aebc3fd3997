"""Kafka ACLs on the wire: grant and revoke the allow rules of `contract.access`.

aiokafka has the request structures (CreateAcls, DeleteAcls, DescribeAcls v1) but no admin
methods for them; these functions send them with a super-user's client options.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from twoway_shared.contract.access import Acl

# Codes of Kafka's AclResourceType, AclOperation, AclPermissionType and PatternType.
_RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "IdempotentWrite": 12}
_ALLOW = 3
_LITERAL = 3
_ANY_HOST = "*"


class AclError(RuntimeError):
    """The broker refused an ACL change; the message carries its reason."""


def _binding(acl: Acl) -> tuple[int, str, int, str, str, int, int]:
    return (
        _RESOURCE[acl.resource_type],
        acl.name,
        _LITERAL,
        acl.principal,
        _ANY_HOST,
        _OPERATION[acl.operation],
        _ALLOW,
    )


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([_binding(acl) for acl in self._acls])


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class([_binding(acl) for acl in self._acls])


async def grant(options: dict[str, Any], acls: Sequence[Acl], *, timeout: float = 30.0) -> None:
    """Create the allow rules and wait until the broker enforces them (idempotent)."""
    if not acls:
        return
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        response: Any = await admin._send_request(_CreateAcls(acls))
        failed = [(code, message) for code, message in response.creation_responses if code]
        if failed:
            raise AclError(f"the broker refused {len(failed)} ACL(s): {failed[0]}")
        # The controller committed them; wait until this broker has them too.
        await _wait_visible(admin, acls[-1], timeout)
    finally:
        await admin.close()


async def revoke(options: dict[str, Any], acls: Sequence[Acl]) -> None:
    """Delete exactly these allow rules (missing ones are fine)."""
    if not acls:
        return
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        response: Any = await admin._send_request(_DeleteAcls(acls))
        failed = [(r[0], r[1]) for r in response.filter_responses if r[0]]
        if failed:
            raise AclError(f"the broker refused to delete ACLs: {failed[0]}")
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, acl: Acl, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response: Any = await admin._send_request(DescribeAclsRequest(*_binding(acl)))
        if response.error_code:
            raise AclError(f"describing ACLs failed: {response.error_message}")
        if response.resources:
            return
        if time.monotonic() > deadline:
            raise AclError(f"the broker did not show {acl} within {timeout:.0f} s")
        await asyncio.sleep(0.05)
