"""Test support: real Kafka and PostgreSQL for a test session, helpers to publish and wait."""
