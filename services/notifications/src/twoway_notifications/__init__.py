"""Twoway notifications service."""
