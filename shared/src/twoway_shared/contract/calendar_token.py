"""Calendar feed capability tokens: an HMAC of the participant id, verified under a key list.

A token is `<participant id, base64url>.<HMAC-SHA256 of it, base64url>` (256-bit MAC). The
first key signs; every key verifies, so keys rotate by putting a new one first and removing
the old one later, which revokes the links it signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from twoway_shared.contract.values import ID_PATTERN

_ID = re.compile(ID_PATTERN)


def parse_keys(text: str | None) -> list[bytes]:
    """`TWOWAY_CALENDAR_KEYS` as a list of keys (comma-separated, blanks ignored)."""
    return [k.strip().encode() for k in (text or "").split(",") if k.strip()]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, participant_id: str) -> bytes:
    return hmac.new(key, b"twoway-calendar:" + participant_id.encode(), hashlib.sha256).digest()


def sign(participant_id: str, keys: Sequence[bytes]) -> str:
    """The feed token of a participant under the first key."""
    if not keys:
        raise ValueError("TWOWAY_CALENDAR_KEYS is empty: no key to sign calendar links with")
    return f"{_b64(participant_id.encode())}.{_b64(_mac(keys[0], participant_id))}"


def verify(token: str, keys: Sequence[bytes]) -> str | None:
    """The participant id a token was signed for under any key, or None for any invalid token.

    Every key is tried with a constant-time comparison, so the time taken does not depend on
    how much of a forged MAC is right.
    """
    participant_id, mac = _parse(token)
    found = False
    # The MACs are computed even for a malformed token, so garbage and a well-formed forgery
    # cost the same.
    for key in keys:
        found |= hmac.compare_digest(_mac(key, participant_id or "-"), mac)
    return participant_id if found and participant_id is not None else None


def _parse(token: str) -> tuple[str | None, bytes]:
    head, dot, tail = token.partition(".")
    if not dot or len(token) > 200:
        return None, b""
    try:
        participant_id = _unb64(head).decode("utf-8")
        mac = _unb64(tail)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None, b""
    if not _ID.fullmatch(participant_id) or len(participant_id) > 64:
        return None, mac
    return participant_id, mac
