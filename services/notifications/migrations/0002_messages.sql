-- Contact details, programme reminder settings, sessions seen, and the log of every message.
-- Messages are facts (what, to whom, due when); bodies are rendered at send time and never
-- stored, so a profile update applies to unsent messages and erasure leaves no copy behind.

CREATE TABLE notifications.participants (
    participant_id   text        PRIMARY KEY,
    programme_id     text        NOT NULL,
    role             text        NOT NULL,
    display_name     text,
    email            text,
    timezone         text,
    locale           text        NOT NULL DEFAULT 'en',
    notify_email     boolean     NOT NULL DEFAULT true,
    notify_reminders boolean     NOT NULL DEFAULT true,
    revision         integer     NOT NULL DEFAULT 0,
    withdrawn        boolean     NOT NULL DEFAULT false,
    erased           boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications.programmes (
    programme_id     text      PRIMARY KEY,
    reminder_minutes integer[] NOT NULL
);

CREATE TABLE notifications.sessions (
    session_id   text        PRIMARY KEY,
    pair_id      text        NOT NULL,
    programme_id text        NOT NULL,
    mentor_id    text        NOT NULL,
    mentee_id    text        NOT NULL,
    sequence     integer     NOT NULL,
    total        integer,
    starts_at    timestamptz,
    ends_at      timestamptz,
    revision     integer     NOT NULL,
    status       text        NOT NULL,
    cause_id     text        NOT NULL
);
CREATE INDEX sessions_pair ON notifications.sessions (pair_id);
CREATE INDEX sessions_programme ON notifications.sessions (programme_id) WHERE status = 'scheduled';

-- status: pending (due at due_at; a lease marks a claim), waiting (for contact details),
-- sent, failed, skipped (opted out, erased, or nothing left to say).
CREATE TABLE notifications.messages (
    notification_id  text        PRIMARY KEY,
    participant_id   text        NOT NULL,
    partner_id       text,
    needs_partner    boolean     NOT NULL DEFAULT false,
    template         text        NOT NULL,
    pair_id          text,
    session_id       text,
    group_key        text,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    cause_id         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    due_at           timestamptz NOT NULL,
    lease_until      timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    first_attempt_at timestamptz,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    error            text
);
CREATE INDEX messages_due ON notifications.messages (due_at) WHERE status = 'pending';
CREATE INDEX messages_recipient ON notifications.messages (participant_id, created_at DESC);
CREATE INDEX messages_session ON notifications.messages (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX messages_pair ON notifications.messages (pair_id, template);
CREATE INDEX messages_waiting_partner ON notifications.messages (partner_id) WHERE status = 'waiting';

-- The sessions a grouped cancellation holds.
CREATE TABLE notifications.message_sessions (
    notification_id text NOT NULL REFERENCES notifications.messages ON DELETE CASCADE,
    session_id      text NOT NULL,
    PRIMARY KEY (notification_id, session_id)
);
