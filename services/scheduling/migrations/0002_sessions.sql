-- Scheduling's own copy of programmes, participants and pairs, and every session it booked.
CREATE TABLE scheduling.programmes (
    programme_id     text PRIMARY KEY,
    session_minutes  integer NOT NULL,
    cadence          text    NOT NULL CHECK (cadence IN ('weekly', 'fortnightly')),
    sessions         integer NOT NULL,
    starts_on        date    NOT NULL,
    min_notice_hours integer NOT NULL
);

-- timezone and availability are NULL once erased (or when only a withdrawal was seen).
CREATE TABLE scheduling.participants (
    participant_id text PRIMARY KEY,
    programme_id   text    NOT NULL,
    role           text    CHECK (role IN ('mentor', 'mentee')),
    timezone       text,
    availability   jsonb,
    revision       integer NOT NULL,
    withdrawn      boolean NOT NULL DEFAULT false,
    erased         boolean NOT NULL DEFAULT false
);

-- waiting: confirmed, a profile still unknown; booked: sessions planned; ended: no more.
CREATE TABLE scheduling.pairs (
    pair_id      text PRIMARY KEY,
    programme_id text NOT NULL,
    mentor_id    text NOT NULL,
    mentee_id    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('waiting', 'booked', 'ended'))
);
CREATE INDEX pairs_mentor ON scheduling.pairs (mentor_id);
CREATE INDEX pairs_mentee ON scheduling.pairs (mentee_id);

CREATE TABLE scheduling.sessions (
    session_id   text PRIMARY KEY,
    pair_id      text        NOT NULL,
    programme_id text        NOT NULL,
    mentor_id    text        NOT NULL,
    mentee_id    text        NOT NULL,
    sequence     integer     NOT NULL,
    total        integer     NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    revision     integer     NOT NULL DEFAULT 0,
    status       text        NOT NULL DEFAULT 'scheduled'
        CHECK (status IN ('scheduled', 'cancelled', 'completed', 'missed')),
    UNIQUE (pair_id, sequence)
);
CREATE INDEX sessions_mentor ON scheduling.sessions (mentor_id, starts_at);
CREATE INDEX sessions_mentee ON scheduling.sessions (mentee_id, starts_at);

-- One record per person per session; free-text comments are never stored.
CREATE TABLE scheduling.attendance (
    session_id     text    NOT NULL REFERENCES scheduling.sessions (session_id),
    participant_id text    NOT NULL,
    attended       boolean NOT NULL,
    rating         integer,
    PRIMARY KEY (session_id, participant_id)
);
