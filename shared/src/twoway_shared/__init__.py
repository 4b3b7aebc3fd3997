"""Twoway shared contract and platform."""
