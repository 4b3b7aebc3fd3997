-- Version 1.1: what a pair's recurring series (the calendar feed's VEVENTs) is built from.
-- A session's place in its series is the week it was first booked in; the series' time zone
-- and cadence are the mentee's zone and the programme's cadence when it was booked.
ALTER TABLE scheduling.sessions
    ADD COLUMN first_starts_at timestamptz,
    ADD COLUMN series_zone     text,
    ADD COLUMN series_weeks    integer;

UPDATE scheduling.sessions s SET first_starts_at = s.starts_at,
    series_zone = (SELECT p.timezone FROM scheduling.participants p
                   WHERE p.participant_id = s.mentee_id),
    series_weeks = (SELECT CASE g.cadence WHEN 'fortnightly' THEN 2 ELSE 1 END
                    FROM scheduling.programmes g WHERE g.programme_id = s.programme_id)
WHERE s.first_starts_at IS NULL;
