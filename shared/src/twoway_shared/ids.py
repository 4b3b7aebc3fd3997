"""Stable ids: a UUID (version 5) derived from what a thing is about, the same on every run.

Every service derives the ids of its pairs, sessions, messages and events this way, so a
replayed or redelivered record produces the same ids and consumers can deduplicate.
"""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID

_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


class StableIds:
    """Ids in one service's namespace; `sep` joins the parts (kept per service, as published)."""

    def __init__(self, namespace: str, sep: str = "/") -> None:
        # The hash of the namespace is taken once; each id hashes only its own name.
        self._namespace = sha1(UUID(namespace).bytes, usedforsecurity=False)
        self._sep = sep

    def __call__(self, *parts: object) -> str:
        """`str(uuid5(namespace, sep.join(parts)))`, without building a `UUID` on the way."""
        digest = self._namespace.copy()
        digest.update(self._sep.join(map(str, parts)).encode())
        h = digest.hexdigest()
        # The version nibble is 5, the variant's two high bits are 10 (RFC 4122).
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
