"""The platform every Twoway service runs on: settings, Kafka, PostgreSQL, outbox, HTTP."""
