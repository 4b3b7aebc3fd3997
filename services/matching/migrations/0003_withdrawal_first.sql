-- A withdrawal seen before any enrolment is kept as a tombstone (no role, revision -1), the same
-- way every service applies the one enrolment rule (twoway_shared.enrolment).
ALTER TABLE matching.participants ALTER COLUMN role DROP NOT NULL;
