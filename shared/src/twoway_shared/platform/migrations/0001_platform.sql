-- The platform's tables, created in every service's own schema.
-- inbox: one row per consumed event (source, id), written in the handler's transaction,
-- so a record processed again has no effect.
CREATE TABLE {schema}.inbox (
    source          text        NOT NULL,
    event_id        text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- outbox: events committed with the writes that caused them; the relay publishes and deletes.
CREATE TABLE {schema}.outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    event_type  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- dead_letters: the coordinates of every record sent to the dead-letter topic, so a rewound
-- consumer group does not dead-letter the same record twice. No reason or payload is kept
-- here (it may hold personal data; the topic is for operators only).
CREATE TABLE {schema}.dead_letters (
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
