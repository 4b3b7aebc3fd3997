-- What the coordinators' dashboard needs beyond progress's own tables: matching's proposals and
-- declines (pairs.v1, for the funnel and why someone is unmatched) and notifications'
-- deliveries (notifications.v1, emails sent and failed). Ids only: no name, no address.

-- score is NULL when a decline arrived before its proposal.
CREATE TABLE progress.proposals (
    pair_id         text PRIMARY KEY,
    programme_id    text             NOT NULL,
    mentor_id       text             NOT NULL,
    mentee_id       text             NOT NULL,
    score           double precision,
    declined_reason text CHECK (declined_reason IN ('declined', 'expired', 'withdrawn'))
);
CREATE INDEX proposals_programme ON progress.proposals (programme_id);
CREATE INDEX proposals_mentor ON progress.proposals (mentor_id);
CREATE INDEX proposals_mentee ON progress.proposals (mentee_id);

-- notifications.v1 names the person, not the programme: the programme is the person's.
CREATE TABLE progress.deliveries (
    notification_id text PRIMARY KEY,
    participant_id  text    NOT NULL,
    template        text    NOT NULL,
    delivered       boolean NOT NULL
);
CREATE INDEX deliveries_participant ON progress.deliveries (participant_id);
