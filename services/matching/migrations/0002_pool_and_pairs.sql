-- The pool of participants, the programmes' settings, the pairs, and pending rounds.

CREATE TABLE matching.programmes (
    programme_id text        PRIMARY KEY,
    settings     jsonb       NOT NULL,  -- programme.configured data, starts_on resolved
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One enrolment of one person in one programme. `profile` holds only what matching needs
-- (no name, no email); it is NULL once the person asked for erasure.
CREATE TABLE matching.participants (
    participant_id text        PRIMARY KEY,
    programme_id   text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('mentor', 'mentee')),
    revision       integer     NOT NULL,
    active         boolean     NOT NULL,
    profile        jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX participants_active_by_programme
    ON matching.participants (programme_id) WHERE active;

CREATE TABLE matching.pairs (
    pair_id         text             PRIMARY KEY,
    programme_id    text             NOT NULL,
    mentor_id       text             NOT NULL,
    mentee_id       text             NOT NULL,
    status          text             NOT NULL
        CHECK (status IN ('proposed', 'confirmed', 'declined', 'expired', 'ended')),
    score           double precision NOT NULL,
    reasons         jsonb            NOT NULL,
    proposed_at     timestamptz      NOT NULL,
    expires_at      timestamptz,
    mentor_accepted boolean          NOT NULL DEFAULT false,
    mentee_accepted boolean          NOT NULL DEFAULT false,
    closed_at       timestamptz,
    closed_by       text,
    UNIQUE (programme_id, mentor_id, mentee_id)
);
CREATE INDEX pairs_by_mentor ON matching.pairs (mentor_id);
CREATE INDEX pairs_by_mentee ON matching.pairs (mentee_id);
CREATE INDEX pairs_expiring ON matching.pairs (expires_at) WHERE status = 'proposed';

-- A round is due for a programme at `due_at`; the worker that claims it clears it.
CREATE TABLE matching.rounds (
    programme_id text        PRIMARY KEY,
    due_at       timestamptz,
    last_run_at  timestamptz,
    summary      jsonb
);
CREATE INDEX rounds_due ON matching.rounds (due_at) WHERE due_at IS NOT NULL;
