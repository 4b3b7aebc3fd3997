"""A real Kafka broker and PostgreSQL server as plain local processes, no Docker needed."""
