-- Short leases with a holder, and the 'sending' state that makes a delivery never repeat.
-- A sender claims a message (lease_holder = its instance id, lease_until a few seconds ahead,
-- renewed while it works), and sets status = 'sending' in a committed transaction just before
-- it writes the SMTP end-of-data mark. A message left 'sending' by a dead holder was handed
-- to the SMTP server (or, rarely, rejected at the end of data): it is recorded as sent, never
-- sent again. A message left 'pending' by a dead holder was not handed over: another
-- instance sends it once the lease expires.
ALTER TABLE notifications.messages ADD COLUMN lease_holder text;
CREATE INDEX messages_sending ON notifications.messages (lease_until) WHERE status = 'sending';
