"""Stable ids never change across versions: consumers deduplicate on ids already published."""

from __future__ import annotations

from uuid import UUID, uuid5

from twoway_shared.ids import StableIds


def test_ids_are_uuid5_of_the_joined_parts() -> None:
    ids = StableIds("3f1c9a0e-5b7d-4e8a-9c61-2d4f6b8e0a17")
    expected = uuid5(UUID("3f1c9a0e-5b7d-4e8a-9c61-2d4f6b8e0a17"), "session/P1/3")
    assert ids("session", "P1", 3) == str(expected)
    assert ids("session", "P1", 3) == ids("session", "P1", "3")
    assert ids("session", "P1", 3) != ids("session", "P1", 4)


def test_the_separator_is_part_of_the_id() -> None:
    slash = StableIds("6f1d2c1e-5b8a-4e0b-9a55-2f9d7f3c0a11")
    bar = StableIds("6f1d2c1e-5b8a-4e0b-9a55-2f9d7f3c0a11", sep="|")
    assert bar("booking", "E1") == str(
        uuid5(UUID("6f1d2c1e-5b8a-4e0b-9a55-2f9d7f3c0a11"), "booking|E1")
    )
    assert slash("booking", "E1") != bar("booking", "E1")


def test_ids_match_the_standard_library_for_any_name() -> None:
    namespace = "5d2a8c4e-7f13-4b6a-8e90-1c3b5d7f9a2e"
    ids = StableIds(namespace)
    names = ["", "é/ü", "x" * 200, *(f"session/P{n}/{n % 13}" for n in range(2000))]
    for name in names:
        assert ids(name) == str(uuid5(UUID(namespace), name))
