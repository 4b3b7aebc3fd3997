-- The W3C traceparent of the span that made a message due, so the SMTP send continues the
-- trace of the event that caused the message (docs/operations.md, tracing).
ALTER TABLE notifications.messages ADD COLUMN IF NOT EXISTS traceparent text;
