"""Exceptions the pure domain may raise and the platform turns into dead letters."""

from __future__ import annotations


class Rejected(Exception):
    """A valid record that breaks a business rule; it is dead-lettered with this reason."""
