-- The W3C traceparent of the last event that asked for a round, so the round (and the pairs it
-- proposes) continue that event's trace (docs/operations.md, tracing).
ALTER TABLE matching.rounds ADD COLUMN IF NOT EXISTS traceparent text;
