"""Twoway progress service: follows each pair after booking (contract 1.1)."""
