-- Progress's own copy of programmes, participants, pairs and sessions, its goals and feedback,
-- the credits it awarded, and the learning records still to be sent.
COMMENT ON SCHEMA progress IS 'Twoway progress service';

CREATE TABLE progress.programmes (
    programme_id          text PRIMARY KEY,
    name                  text    NOT NULL DEFAULT '',
    fit_check             boolean NOT NULL,
    inactive_warning_days integer NOT NULL,
    inactive_close_days   integer NOT NULL,
    credit_minutes        integer NOT NULL
);

-- display_name is NULL once erased (or when only a withdrawal was seen).
CREATE TABLE progress.participants (
    participant_id text PRIMARY KEY,
    programme_id   text    NOT NULL,
    role           text    CHECK (role IN ('mentor', 'mentee')),
    display_name   text,
    revision       integer NOT NULL,
    withdrawn      boolean NOT NULL DEFAULT false,
    erased         boolean NOT NULL DEFAULT false
);

-- next_check_at is the pair's durable timer: when the passing of time alone may change its
-- health or close it. NULL: nothing is due (no session yet, never, or the pair ended).
CREATE TABLE progress.pairs (
    pair_id           text PRIMARY KEY,
    programme_id      text        NOT NULL,
    mentor_id         text        NOT NULL,
    mentee_id         text        NOT NULL,
    status            text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    ended_reason      text,
    total             integer,
    booked            integer,
    health            text        NOT NULL DEFAULT 'on_track',
    reasons           text[]      NOT NULL DEFAULT '{}',
    rematch_requested text,
    completed_at      timestamptz,
    next_check_at     timestamptz
);
CREATE INDEX pairs_programme ON progress.pairs (programme_id);
CREATE INDEX pairs_mentor ON progress.pairs (mentor_id);
CREATE INDEX pairs_mentee ON progress.pairs (mentee_id);
CREATE INDEX pairs_due ON progress.pairs (next_check_at) WHERE next_check_at IS NOT NULL;

CREATE TABLE progress.sessions (
    session_id text PRIMARY KEY,
    pair_id    text        NOT NULL,
    sequence   integer     NOT NULL,
    starts_at  timestamptz,
    ends_at    timestamptz,
    status     text        NOT NULL CHECK (status IN ('scheduled', 'cancelled', 'completed', 'missed')),
    minutes    integer     NOT NULL DEFAULT 0
);
CREATE INDEX sessions_pair ON progress.sessions (pair_id, sequence);

-- One row per person per session; a later submission replaces it. participant_id becomes an
-- anonymous token when the person is erased (the role stays, for programme statistics).
CREATE TABLE progress.feedback (
    session_id     text        NOT NULL,
    participant_id text        NOT NULL,
    pair_id        text        NOT NULL,
    programme_id   text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('mentor', 'mentee')),
    sequence       integer     NOT NULL,
    rating         integer     NOT NULL,
    learned        text[]      NOT NULL DEFAULT '{}',
    fit            text,
    comment        text,
    submitted_at   timestamptz NOT NULL,
    PRIMARY KEY (session_id, participant_id)
);
CREATE INDEX feedback_pair ON progress.feedback (pair_id);
CREATE INDEX feedback_programme ON progress.feedback (programme_id);

CREATE TABLE progress.goals (
    pair_id        text    NOT NULL,
    participant_id text    NOT NULL,
    position       integer NOT NULL,
    tag            text    NOT NULL,
    note           text,
    PRIMARY KEY (pair_id, participant_id, position)
);

CREATE TABLE progress.credits (
    credit_id          text PRIMARY KEY,
    participant_id     text          NOT NULL,
    programme_id       text          NOT NULL,
    pair_id            text          NOT NULL,
    role               text          NOT NULL,
    sessions_completed integer       NOT NULL,
    minutes            integer       NOT NULL,
    credits            numeric(10,1) NOT NULL,
    topics             text[]        NOT NULL,
    issued_at          timestamptz   NOT NULL,
    first_session_at   timestamptz,
    last_session_at    timestamptz
);
CREATE INDEX credits_participant ON progress.credits (participant_id);

-- The durable queue of xAPI statements: written with the facts, sent by a worker with backoff.
CREATE TABLE progress.statements (
    statement_id    text PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('attended', 'completed')),
    fact            jsonb       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text
);
CREATE INDEX statements_due ON progress.statements (next_attempt_at);
