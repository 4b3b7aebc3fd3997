-- Contract 1.1: rounds only when asked for or in continuous mode, pairs ended by progress.

-- A round asked for by programme.matching_requested runs whatever the mode; any other due
-- round runs only once the programme is known to be continuous.
ALTER TABLE matching.rounds ADD COLUMN requested boolean NOT NULL DEFAULT false;

-- Completed a pair in this programme (pair.completed): no new partner until enrolled again
-- with a higher revision.
ALTER TABLE matching.participants
    ADD COLUMN paused_after_completion boolean NOT NULL DEFAULT false;

-- Why a pair closed: declined, expired, withdrawn, not_a_fit, inactive or completed.
ALTER TABLE matching.pairs ADD COLUMN closed_reason text;
-- Before 1.1 only a withdrawal ended a pair; a declined pair's reason was not kept.
UPDATE matching.pairs SET closed_reason = CASE status WHEN 'expired' THEN 'expired'
                                                      WHEN 'ended' THEN 'withdrawn' END
WHERE status IN ('expired', 'ended');
