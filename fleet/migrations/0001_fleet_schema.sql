-- The fleet's database: what every site sent, once per event id (docs/fleet.md).
-- Applied by yoyo (fleet/schema.py); never edit an applied migration, add the next one.

-- Every message the stream delivered, once: lane events by their event_id, everything else
-- by a hash of subject and payload (a bridge resend is the same bytes, so it is the same id).
CREATE TABLE events (
    event_id    text PRIMARY KEY,
    site        text NOT NULL,
    kind        text NOT NULL,              -- the topic kind: lane_event, sensor_reading, ...
    node        text NOT NULL,              -- lane, sensor node, patrol reader, alarm kind ...
    type        text,                       -- a lane event's type (passed, decision, ...)
    seq         bigint,                     -- the node's own sequence number, where it has one
    ts          timestamptz,
    stream_seq  bigint NOT NULL,            -- JetStream's sequence: the order the fleet got it
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_site_order ON events (site, stream_seq);

-- One row per parking session, opened by the entry passage, closed by the exit.
CREATE TABLE sessions (
    site        text NOT NULL,
    session_id  text NOT NULL,
    plate       text,
    entry_lane  text,
    entered_at  timestamptz,
    exit_lane   text,
    exited_at   timestamptz,
    fee_fen     bigint NOT NULL DEFAULT 0 CHECK (fee_fen >= 0),
    settled     text,
    PRIMARY KEY (site, session_id)
);

-- Money the lanes reported: an exit passage with its fee and how it was settled, and every
-- payment code charged at a lane. Integer fen.
CREATE TABLE payments (
    event_id    text PRIMARY KEY REFERENCES events (event_id),
    site        text NOT NULL,
    lane        text NOT NULL,
    session_id  text,
    source      text NOT NULL,              -- exit | payment_code
    settled     text,
    fee_fen     bigint NOT NULL CHECK (fee_fen >= 0),
    ts          timestamptz NOT NULL
);
CREATE INDEX payments_site ON payments (site, ts);

-- Each site's alarms as last reported (fire, flood).
CREATE TABLE alarms (
    site        text NOT NULL,
    kind        text NOT NULL,
    active      boolean NOT NULL,
    source      text NOT NULL,
    zone        text,
    since       timestamptz,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (site, kind)
);

-- Lanes, sensor nodes, the gateway and the bridge: up or down, and the last fault.
CREATE TABLE device_health (
    site        text NOT NULL,
    device      text NOT NULL,              -- lane:in1, sensor:flood1, gateway, bridge
    online      boolean,
    fault       text,                       -- last open fault code, NULL once cleared
    detail      text,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (site, device)
);

-- Patrol taps; compliance per site and day is the view below.
CREATE TABLE patrol_taps (
    event_id    text PRIMARY KEY REFERENCES events (event_id),
    site        text NOT NULL,
    reader      text NOT NULL,
    seq         bigint NOT NULL,
    tag_id      text NOT NULL,
    badge       text NOT NULL,
    reader_time timestamp NOT NULL          -- the reader's local clock, as it sent it
);
CREATE VIEW patrol_compliance AS
    SELECT site, reader_time::date AS day, count(*) AS taps,
           count(DISTINCT tag_id) AS checkpoints, count(DISTINCT badge) AS guards
    FROM patrol_taps GROUP BY site, reader_time::date;

-- Each audit head a site published: the fleet's copy of the chain's anchors. A site whose
-- chain no longer has these hashes at these lengths was rewritten (fleet/anchor.py).
CREATE TABLE audit_heads (
    site        text NOT NULL,
    length      bigint NOT NULL CHECK (length >= 0),
    head_hash   text NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, length)
);

-- What could not be read: counted, kept with its reason, never stops the consumer.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    stream_seq  bigint NOT NULL UNIQUE,
    reason      text NOT NULL,
    payload     bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
