"""Twoway matching service."""
