"""Twoway's development package: local stack, demo, toolkit and test support.

Nothing here ships in the service image: the services depend on `twoway_shared` (contract
and platform) only, and this package builds on it, never the other way round.
"""
