"""Twoway scheduling service."""
