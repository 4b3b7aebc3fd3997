"""Stable ids: a UUID (version 5) derived from what a thing is about, the same on every run.

Every service derives the ids of its pairs, sessions, messages and events this way, so a
replayed or redelivered record produces the same ids and consumers can deduplicate.
"""

from __future__ import annotations

from uuid import UUID, uuid5


class StableIds:
    """Ids in one service's namespace; `sep` joins the parts (kept per service, as published)."""

    def __init__(self, namespace: str, sep: str = "/") -> None:
        self._namespace = UUID(namespace)
        self._sep = sep

    def __call__(self, *parts: object) -> str:
        return str(uuid5(self._namespace, self._sep.join(str(p) for p in parts)))
