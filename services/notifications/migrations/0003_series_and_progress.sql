-- Version 1.1: what a pair's recurring series is built from, and what the progress messages need.

-- A session's place in its series is the week it was first booked in; the series' time zone
-- and cadence are the mentee's zone and the programme's cadence when it was booked.
ALTER TABLE notifications.sessions
    ADD COLUMN first_starts_at timestamptz,
    ADD COLUMN series_zone     text,
    ADD COLUMN series_weeks    integer;
UPDATE notifications.sessions SET first_starts_at = starts_at WHERE first_starts_at IS NULL;

ALTER TABLE notifications.programmes
    ADD COLUMN cadence_weeks integer NOT NULL DEFAULT 1;

-- What each person of a pair will learn (tags from pair.proposed), for invitations.
CREATE TABLE notifications.pairs (
    pair_id       text   PRIMARY KEY,
    programme_id  text   NOT NULL,
    mentor_id     text   NOT NULL,
    mentee_id     text   NOT NULL,
    mentee_learns text[] NOT NULL,
    mentor_learns text[] NOT NULL
);
